// One event hub and its consumer groups, configured from infra/entities/eventhubs.json.
param namespaceName string

@description('Hub entry in the emulator Config.json shape: { Name, PartitionCount, ConsumerGroups }.')
param hub object

param messageRetentionInDays int

// '$Default' exists on every hub and can't be created; only the others are.
var consumerGroups = filter(contains(hub, 'ConsumerGroups') ? hub.ConsumerGroups : [], group => toLower(group.Name) != '$default')

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource entity 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hub.Name
  properties: {
    partitionCount: hub.PartitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = [for group in consumerGroups: {
  parent: entity
  name: group.Name
}]

output name string = entity.name
