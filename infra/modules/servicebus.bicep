// One Service Bus namespace with the queues and topics whose names start with entityPrefix
// (all of them when the prefix is empty: the centralized topology).
param name string
param location string
param tags object

@description('Standard is the least that supports topics; Premium adds isolation and zone redundancy.')
@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

@description('Queues in the emulator Config.json shape (infra/entities/servicebus.json).')
param queues array

@description('Topics in the emulator Config.json shape, with their subscriptions and rules.')
param topics array

@description('Only entities whose name starts with this prefix live here; empty means all.')
param entityPrefix string = ''

@description('Principal of the app identity that sends and receives on this namespace.')
param appPrincipalId string

// Role definitions (built-in, same GUID in every tenant).
var serviceBusDataSenderRoleId = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
var serviceBusDataReceiverRoleId = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver

var ownQueues = filter(queues, queue => startsWith(queue.Name, entityPrefix))
var ownTopics = filter(topics, topic => startsWith(topic.Name, entityPrefix))

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
  }
  properties: {
    // SAS keys off: every client authenticates with Entra ID.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

module queue 'servicebus-queue.bicep' = [for entity in ownQueues: {
  name: take('${name}-q-${entity.Name}', 64)
  params: {
    namespaceName: namespace.name
    queue: entity
  }
}]

module topic 'servicebus-topic.bicep' = [for entity in ownTopics: {
  name: take('${name}-t-${entity.Name}', 64)
  params: {
    namespaceName: namespace.name
    topic: entity
  }
}]

// Every agent both sends (outbox relay) and receives (triggers) on its domain's entities, so the
// grant is Sender + Receiver on the namespace, never Owner (no management rights).
resource dataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, appPrincipalId, serviceBusDataSenderRoleId)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSenderRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource dataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, appPrincipalId, serviceBusDataReceiverRoleId)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiverRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = namespace.name
output id string = namespace.id
// Host name only (what <NAME>__fullyQualifiedNamespace expects), from the endpoint so any cloud works.
output fullyQualifiedNamespace string = replace(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
