// Subscriptions on a partner topic: the SaaS helpdesk (an Event Grid partner) created the topic
// in this resource group and it was activated; this pushes its events to functions, from one topic
// entry of infra/entities/eventgrid.json. The partner topic must have a system-assigned identity,
// which dead-letters undeliverable events.

@description('Topic entry: { Name, InputSchema, Subscriptions: [...] }; Name is the logical topic.')
param topic object

@description('Name of the activated partner topic in this resource group.')
param partnerTopicName string

@description('Resource id of the function app the subscriptions deliver to.')
param functionAppId string

@description('Create the subscriptions: false on the first deployment, before the functions exist.')
param subscribeFunctions bool

param storageAccountName string

@description('The one container dead-letters go to; the topic identity may write there and nowhere else.')
param deadLetterContainerName string

// Storage Blob Data Contributor (built-in, same GUID in every tenant).
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

var subscriptions = subscribeFunctions ? topic.Subscriptions : []

resource partnerTopic 'Microsoft.EventGrid/partnerTopics@2022-06-15' existing = {
  name: partnerTopicName
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

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, partnerTopic.id, storageBlobDataContributorRoleId)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: partnerTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource subscription 'Microsoft.EventGrid/partnerTopics/eventSubscriptions@2022-06-15' = [for item in subscriptions: {
  parent: partnerTopic
  name: item.Name
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${item.Destination.FunctionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: item.Filter.IncludedEventTypes
      subjectBeginsWith: contains(item.Filter, 'SubjectBeginsWith') ? item.Filter.SubjectBeginsWith : null
      subjectEndsWith: contains(item.Filter, 'SubjectEndsWith') ? item.Filter.SubjectEndsWith : null
    }
    retryPolicy: {
      maxDeliveryAttempts: item.RetryPolicy.MaxDeliveryAttempts
      eventTimeToLiveInMinutes: item.RetryPolicy.EventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: item.DeadLetterDestination.BlobContainerName
        }
      }
    }
  }
  dependsOn: [
    deadLetterWriter
  ]
}]

output name string = partnerTopic.name
