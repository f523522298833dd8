// Log Analytics + workspace-based Application Insights that accepts Entra ID-authenticated telemetry only.
param logAnalyticsName string
param appInsightsName string
param location string
param tags object

@description('Principal that publishes telemetry (the app identity).')
param publisherPrincipalId string

@minValue(30)
param retentionInDays int = 30

// Monitoring Metrics Publisher: the only role telemetry ingestion with Entra ID needs.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Local (instrumentation-key) ingestion off: telemetry must carry an Entra ID token.
    DisableLocalAuth: true
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, publisherPrincipalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output appInsightsName string = appInsights.name
// The connection string names the ingestion endpoint; with DisableLocalAuth it grants nothing without a token.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output workspaceId string = workspace.id
