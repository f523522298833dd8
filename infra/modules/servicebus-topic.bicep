// One Service Bus topic and its subscriptions, configured from infra/entities/servicebus.json.
param namespaceName string

@description('Topic entry in the emulator Config.json shape: { Name, Properties, Subscriptions }.')
param topic object

// The emulator schema's defaults, so an omitted property means the same on Azure as locally.
var defaults = {
  DefaultMessageTimeToLive: 'PT1H'
  DuplicateDetectionHistoryTimeWindow: 'PT20S'
  RequiresDuplicateDetection: false
}
var settings = union(defaults, contains(topic, 'Properties') ? topic.Properties : {})
var subscriptions = contains(topic, 'Subscriptions') ? topic.Subscriptions : []

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource entity 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: topic.Name
  properties: {
    defaultMessageTimeToLive: settings.DefaultMessageTimeToLive
    duplicateDetectionHistoryTimeWindow: settings.DuplicateDetectionHistoryTimeWindow
    requiresDuplicateDetection: settings.RequiresDuplicateDetection
  }
}

module subscription 'servicebus-subscription.bicep' = [for item in subscriptions: {
  name: take('${namespaceName}-s-${topic.Name}-${item.Name}', 64)
  params: {
    namespaceName: namespaceName
    topicName: entity.name
    subscription: item
  }
}]

output name string = entity.name
