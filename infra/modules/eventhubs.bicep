// One Event Hubs namespace with the hubs whose names start with entityPrefix (all of them when
// the prefix is empty: the centralized topology).
param name string
param location string
param tags object

@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

@minValue(1)
param capacity int = 1

@description('Event hubs in the emulator Config.json shape (infra/entities/eventhubs.json).')
param hubs array

@description('Only hubs whose name starts with this prefix live here; empty means all.')
param entityPrefix string = ''

@description('Principal of the app identity that sends and receives on this namespace.')
param appPrincipalId string

@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 1

// Role definitions (built-in, same GUID in every tenant).
var eventHubsDataSenderRoleId = '2b629674-e913-4c01-ae53-ef4638d8f975' // Azure Event Hubs Data Sender
var eventHubsDataReceiverRoleId = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde' // Azure Event Hubs Data Receiver

var ownHubs = filter(hubs, hub => startsWith(hub.Name, entityPrefix))

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
    capacity: capacity
  }
  properties: {
    // SAS keys off: every client authenticates with Entra ID.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

module hub 'eventhubs-hub.bicep' = [for entity in ownHubs: {
  name: take('${name}-h-${entity.Name}', 64)
  params: {
    namespaceName: namespace.name
    hub: entity
    messageRetentionInDays: messageRetentionInDays
  }
}]

// The fraud agent produces to and consumes from its hubs: Sender + Receiver, never Owner.
resource dataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, appPrincipalId, eventHubsDataSenderRoleId)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSenderRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource dataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, appPrincipalId, eventHubsDataReceiverRoleId)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiverRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = namespace.name
output id string = namespace.id
// Host name only (what <NAME>__fullyQualifiedNamespace expects), from the endpoint so any cloud works.
output fullyQualifiedNamespace string = replace(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
