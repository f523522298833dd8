// One Service Bus queue, configured from its entry in infra/entities/servicebus.json.
param namespaceName string

@description('Queue entry in the emulator Config.json shape: { Name, Properties }.')
param queue object

// The emulator schema's defaults, so an omitted property means the same on Azure as locally.
var defaults = {
  DeadLetteringOnMessageExpiration: false
  DefaultMessageTimeToLive: 'PT1H'
  DuplicateDetectionHistoryTimeWindow: 'PT20S'
  ForwardDeadLetteredMessagesTo: ''
  ForwardTo: ''
  LockDuration: 'PT1M'
  MaxDeliveryCount: 3
  RequiresDuplicateDetection: false
  RequiresSession: false
}
var settings = union(defaults, contains(queue, 'Properties') ? queue.Properties : {})

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource entity 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queue.Name
  properties: {
    deadLetteringOnMessageExpiration: settings.DeadLetteringOnMessageExpiration
    defaultMessageTimeToLive: settings.DefaultMessageTimeToLive
    duplicateDetectionHistoryTimeWindow: settings.DuplicateDetectionHistoryTimeWindow
    forwardDeadLetteredMessagesTo: empty(settings.ForwardDeadLetteredMessagesTo) ? null : settings.ForwardDeadLetteredMessagesTo
    forwardTo: empty(settings.ForwardTo) ? null : settings.ForwardTo
    lockDuration: settings.LockDuration
    maxDeliveryCount: settings.MaxDeliveryCount
    requiresDuplicateDetection: settings.RequiresDuplicateDetection
    requiresSession: settings.RequiresSession
  }
}

output name string = entity.name
