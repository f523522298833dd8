// The function app on an Elastic Premium plan: pre-warmed and always-ready instances, so the
// triggers never wait for a cold start.
param name string
param planName string
param location string
param tags object

@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param sku string = 'EP1'

@description('Instances kept warm beyond the ones running, absorbing a scale-out without a cold start.')
@minValue(0)
param preWarmedInstanceCount int = 1

@description('Always-ready instances: the plan never scales below this.')
@minValue(1)
param minimumElasticInstanceCount int = 1

@description('Upper bound of the scale-out (a bound on what the downstream services see).')
@minValue(1)
param maximumElasticWorkerCount int = 20

param pythonVersion string = '3.11'

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

param storageBlobEndpoint string
param packageContainerName string

@description('Name of the package blob the app runs from (uploaded by the deploy step).')
param packageBlobName string = 'released-package.zip'

@description('Identity-based connection settings and the rest of the app configuration.')
param appSettings object

// Premium would by default keep the app's content on an Azure Files share, which is reachable only
// with an account key (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING). With shared keys off on the
// storage account, the app runs from a package URL read with the managed identity instead, so no
// content share and no key exist; the deploy step uploads the zip to that blob and restarts.
var premiumSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  WEBSITE_RUN_FROM_PACKAGE: '${storageBlobEndpoint}${packageContainerName}/${packageBlobName}'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identityId
}
var settings = union(appSettings, premiumSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: sku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumElasticWorkerCount
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    reserved: true
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      linuxFxVersion: 'Python|${pythonVersion}'
      preWarmedInstanceCount: preWarmedInstanceCount
      minimumElasticInstanceCount: minimumElasticInstanceCount
      functionAppScaleLimit: maximumElasticWorkerCount
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: [for setting in items(settings): {
        name: setting.key
        value: setting.value
      }]
    }
  }
}

// Publishing with a user name and password off: deployments authenticate with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output id string = app.id
output defaultHostName string = app.properties.defaultHostName
