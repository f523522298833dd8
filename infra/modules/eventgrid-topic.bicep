// The custom Event Grid topic a SaaS helpdesk (or the app's own webhook ingress) publishes
// CloudEvents to, from one topic entry of infra/entities/eventgrid.json. Its subscriptions are
// eventgrid-subscriptions.bicep: they need the function app, whose settings need this endpoint.
param location string
param tags object

@description('Topic entry: { Name, InputSchema, Subscriptions: [{ Name, Destination, Filter, RetryPolicy, DeadLetterDestination }] }.')
param topic object

@description('Azure name of the custom topic.')
param customTopicName string

param storageAccountName string

@description('The one container dead-letters go to; the topic identity may write there and nowhere else.')
param deadLetterContainerName string

@description('Principal of the helpdesk publisher, granted EventGrid Data Sender on the custom topic; empty for none.')
param publisherPrincipalId string = ''

@description('Principal of the app identity, granted EventGrid Data Sender: the webhook ingress publishes here.')
param appPrincipalId string

// Role definitions (built-in, same GUID in every tenant).
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender

resource customTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: customTopicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: topic.InputSchema
    // Access keys off: publishers authenticate with Entra ID (EventGrid Data Sender).
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

// Dead-lettering uses the topic's own identity, allowed to write blobs in the dead-letter container only.

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, topic.Name, storageBlobDataContributorRoleId)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: customTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(customTopic.id, appPrincipalId, eventGridDataSenderRoleId)
  scope: customTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(publisherPrincipalId)) {
  name: guid(customTopic.id, publisherPrincipalId, eventGridDataSenderRoleId)
  scope: customTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: publisherPrincipalId
  }
}

output name string = customTopic.name
output endpoint string = customTopic.properties.endpoint
