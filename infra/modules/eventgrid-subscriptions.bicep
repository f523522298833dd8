// The subscriptions of one custom Event Grid topic that push to functions, from its entry in
// infra/entities/eventgrid.json; they dead-letter to blob with the topic's own identity, which
// eventgrid-topic.bicep allowed to write the dead-letter container.

@description('Topic entry: { Name, InputSchema, Subscriptions: [{ Name, Destination, Filter, RetryPolicy, DeadLetterDestination }] }.')
param topic object

@description('Azure name of the custom topic (an output of eventgrid-topic.bicep).')
param customTopicName string

@description('Resource id of the function app the subscriptions deliver to.')
param functionAppId string

@description('Create the subscriptions: false on the first deployment, before the functions exist.')
param subscribeFunctions bool

param storageAccountName string

var subscriptions = subscribeFunctions ? topic.Subscriptions : []

resource customTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: customTopicName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource subscription 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = [for item in subscriptions: {
  parent: customTopic
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
}]
