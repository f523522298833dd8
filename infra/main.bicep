// The whole deployment: one resource group with the function app, its identity, storage,
// monitoring, Service Bus, Event Hubs, Event Grid and (optionally) Azure OpenAI.
// Entity names come from infra/entities/*.json, the same files the local devstack loads.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource (Azure OpenAI may use openAiLocation).')
param location string

@description('premium: Elastic Premium with pre-warmed instances. flexconsumption: Flex Consumption with always-ready instances.')
@allowed([
  'premium'
  'flexconsumption'
])
param hostingPlan string = 'premium'

@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param premiumSku string = 'EP1'

@minValue(0)
param preWarmedInstanceCount int = 1

@minValue(1)
param minimumElasticInstanceCount int = 1

@minValue(1)
param maximumElasticWorkerCount int = 20

@minValue(1)
param flexMaximumInstanceCount int = 100

@allowed([
  2048
  4096
])
param flexInstanceMemoryMB int = 2048

@description('Flex always-ready instances: function groups ("http") and single functions ("function:<name>").')
param flexAlwaysReady array = [
  {
    name: 'http'
    instanceCount: 1
  }
  {
    name: 'function:triage_ticket_received'
    instanceCount: 1
  }
]

@description('centralized: one Service Bus and one Event Hubs namespace for all agents. federated: one namespace per agent domain (separate failure domains).')
@allowed([
  'centralized'
  'federated'
])
param topology string = 'centralized'

@description('Standard is the least that supports topics.')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@allowed([
  'Standard'
  'Premium'
])
param eventHubsSku string = 'Standard'

@description('Event Grid topics (by name in infra/entities/eventgrid.json) that a SaaS partner provides as an activated partner topic, mapped to that partner topic name; the rest become custom topics.')
param partnerTopicNames object = {}

@description('Principal of the helpdesk publisher, granted EventGrid Data Sender on the custom topics; empty for none.')
param helpdeskPublisherPrincipalId string = ''

@description('Subscribe the functions to Event Grid; Event Grid checks the function exists, so this is false until the code is deployed once.')
param subscribeFunctions bool = false

@description('Deploy an Azure OpenAI account and model for the agents; otherwise they use the local reasoner.')
param deployOpenAi bool = false

param openAiLocation string = location
param openAiModelName string = 'gpt-4o-mini'
param openAiModelVersion string = '2024-07-18'

@minValue(1)
param openAiCapacity int = 10

@description('Azure OpenAI REST API version the agents call (structured outputs need 2024-08-01-preview or later).')
param openAiApiVersion string = '2024-10-21'

@description('Seconds before an LLM call times out: short, so the circuit breaker sees a slow provider.')
@minValue(1)
param llmTimeoutSeconds int = 10

@description('Retries the openai SDK makes itself before a call counts as failed: few, so the breaker decides.')
@minValue(0)
@maxValue(3)
param llmMaxRetries int = 1

@description('Rate of POST /api/orders per caller: <count>/<s|min|h> [burst=<n>] [caller=function-key|client-id|ip], or off.')
param ordersRateLimit string = '50/s burst=100 caller=function-key'

@description('Fraud rules (agents/fraud/model.py Rules): a payment scoring at least this raises fraud.alert.raised (0-100).')
param fraudAlertScore string = '60'

@description('Fraud rules: a verdict scoring at least this asks the LLM for an explanation (0-100).')
param fraudExplainScore string = '60'

@description('Fraud rules: more payments of one card than this within FRAUD_VELOCITY_WINDOW_SECONDS fires the velocity rule.')
param fraudVelocityCount string = '5'

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

// One source of truth: the emulator-shaped entity files devstack loads.
var serviceBusConfig = loadJsonContent('entities/servicebus.json')
var serviceBusNamespace = serviceBusConfig.UserConfig.Namespaces[0]
var queues = contains(serviceBusNamespace, 'Queues') ? serviceBusNamespace.Queues : []
var topics = contains(serviceBusNamespace, 'Topics') ? serviceBusNamespace.Topics : []
var eventHubsConfig = loadJsonContent('entities/eventhubs.json')
var eventHubs = eventHubsConfig.UserConfig.NamespaceConfig[0].Entities
var eventGridConfig = loadJsonContent('entities/eventgrid.json')
var eventGridTopics = eventGridConfig.UserConfig.Topics

// Every entity name starts with its agent domain; federated gives each domain its own namespace.
var domains = [
  'orders'
  'fraud'
  'triage'
]
var isFederated = topology == 'federated'
var isFlex = hostingPlan == 'flexconsumption'
var serviceBusUnits = isFederated ? domains : [
  'shared'
]
var eventHubDomains = [for hub in eventHubs: split(hub.Name, '-')[0]]
// union() with an empty array removes duplicates: one Event Hubs namespace per domain that has hubs.
var eventHubUnits = isFederated ? union(eventHubDomains, []) : [
  'shared'
]
// A domain's namespace in the module collections: its own when federated, else the shared one (0).
var ordersServiceBus = max(indexOf(serviceBusUnits, 'orders'), 0)
var fraudServiceBus = max(indexOf(serviceBusUnits, 'fraud'), 0)
var triageServiceBus = max(indexOf(serviceBusUnits, 'triage'), 0)
var fraudEventHubs = max(indexOf(eventHubUnits, 'fraud'), 0)

var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var helpdeskPartnerTopics = filter(eventGridTopics, topic => contains(partnerTopicNames, topic.Name))
var helpdeskCustomTopics = filter(eventGridTopics, topic => !contains(partnerTopicNames, topic.Name))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    appInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    publisherPrincipalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module serviceBus 'modules/servicebus.bicep' = [for unit in serviceBusUnits: {
  name: 'servicebus-${unit}'
  scope: rg
  params: {
    name: isFederated ? '${abbrs.serviceBusNamespaces}${unit}-${resourceToken}' : '${abbrs.serviceBusNamespaces}${resourceToken}'
    location: location
    tags: tags
    sku: serviceBusSku
    queues: queues
    topics: topics
    entityPrefix: isFederated ? '${unit}-' : ''
    appPrincipalId: identity.outputs.principalId
  }
}]

module eventHubsNamespace 'modules/eventhubs.bicep' = [for unit in eventHubUnits: {
  name: 'eventhubs-${unit}'
  scope: rg
  params: {
    name: isFederated ? '${abbrs.eventHubNamespaces}${unit}-${resourceToken}' : '${abbrs.eventHubNamespaces}${resourceToken}'
    location: location
    tags: tags
    sku: eventHubsSku
    hubs: eventHubs
    entityPrefix: isFederated ? '${unit}-' : ''
    appPrincipalId: identity.outputs.principalId
  }
}]

module openAi 'modules/openai.bicep' = if (deployOpenAi) {
  name: 'openai'
  scope: rg
  params: {
    name: '${abbrs.cognitiveServicesAccounts}${resourceToken}'
    location: openAiLocation
    tags: tags
    modelName: openAiModelName
    modelVersion: openAiModelVersion
    capacity: openAiCapacity
    appPrincipalId: identity.outputs.principalId
  }
}

// Identity-based connections only: each <NAME>__* group is what the Functions extensions and the
// SDK clients read in place of a connection string; no key or SAS appears anywhere.
var connectionSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  STATE_STORAGE__tableServiceUri: storage.outputs.tableEndpoint
  STATE_STORAGE__credential: 'managedidentity'
  STATE_STORAGE__clientId: identity.outputs.clientId
  ORDERS_SERVICEBUS__fullyQualifiedNamespace: serviceBus[ordersServiceBus].outputs.fullyQualifiedNamespace
  ORDERS_SERVICEBUS__credential: 'managedidentity'
  ORDERS_SERVICEBUS__clientId: identity.outputs.clientId
  FRAUD_SERVICEBUS__fullyQualifiedNamespace: serviceBus[fraudServiceBus].outputs.fullyQualifiedNamespace
  FRAUD_SERVICEBUS__credential: 'managedidentity'
  FRAUD_SERVICEBUS__clientId: identity.outputs.clientId
  FRAUD_EVENTHUBS__fullyQualifiedNamespace: eventHubsNamespace[fraudEventHubs].outputs.fullyQualifiedNamespace
  FRAUD_EVENTHUBS__credential: 'managedidentity'
  FRAUD_EVENTHUBS__clientId: identity.outputs.clientId
  TRIAGE_SERVICEBUS__fullyQualifiedNamespace: serviceBus[triageServiceBus].outputs.fullyQualifiedNamespace
  TRIAGE_SERVICEBUS__credential: 'managedidentity'
  TRIAGE_SERVICEBUS__clientId: identity.outputs.clientId
}

// Telemetry with Entra ID: the connection string only names the endpoint (local auth is off on
// the component), the authentication string makes the host send tokens of the app identity.
var telemetrySettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  // DefaultAzureCredential in the agents picks the user-assigned identity from this.
  AZURE_CLIENT_ID: identity.outputs.clientId
  // host.json telemetryMode OpenTelemetry: the host exports its own spans; the worker passes
  // the invocation's trace context and the app's one configure_azure_monitor() exports the
  // worker's. PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY stays unset: the worker would
  // configure a second distro and export every span twice.
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  OTEL_SERVICE_NAME: 'agents'
}

// Entra ID token of the app identity (Cognitive Services OpenAI User); there is no key setting.
// Without a model the agents take their rules-only / manual fallback.
var reasonerSettings = deployOpenAi ? {
  LLM_PROVIDER: 'azure_openai'
  AZURE_OPENAI_ENDPOINT: openAi.outputs.endpoint
  AZURE_OPENAI_DEPLOYMENT: openAi.outputs.deploymentName
  AZURE_OPENAI_API_VERSION: openAiApiVersion
} : {
  LLM_PROVIDER: 'none'
}

var llmCallSettings = {
  LLM_TIMEOUT_SECONDS: string(llmTimeoutSeconds)
  LLM_MAX_RETRIES: string(llmMaxRetries)
}

// What the agents themselves read (limits, switches), beside the connections. The simulated
// inventory, payments and shipping services are for the local stack only.
var agentSettings = {
  ORDERS_SIMULATORS_ENABLED: 'false'
  ORDERS_RATE_LIMIT: ordersRateLimit
  // Below this confidence a ticket goes to manual triage; the webhook's replay window.
  TRIAGE_CONFIDENCE_THRESHOLD: '0.5'
  HELPDESK_WEBHOOK_TOLERANCE_SECONDS: '300'
  HELPDESK_WEBHOOK_RATE_LIMIT: '20/s burst=50 caller=ip'
  FRAUD_ALERT_SCORE: fraudAlertScore
  FRAUD_EXPLAIN_SCORE: fraudExplainScore
  FRAUD_VELOCITY_COUNT: fraudVelocityCount
}

// The helpdesk webhook publishes to the triage-helpdesk topic with the app identity; a helpdesk
// on a partner topic publishes itself, and the webhook is then off (it answers 503).
var helpdeskIngressTopic = 'triage-helpdesk'
var helpdeskCustomTopicNames = [for topic in helpdeskCustomTopics: topic.Name]
var webhookSettings = contains(partnerTopicNames, helpdeskIngressTopic) ? {} : {
  TRIAGE_EVENTGRID__topicEndpointUri: helpdeskTopic[indexOf(helpdeskCustomTopicNames, helpdeskIngressTopic)].outputs.endpoint
  TRIAGE_EVENTGRID__credential: 'managedidentity'
  TRIAGE_EVENTGRID__clientId: identity.outputs.clientId
}

var appSettings = union(connectionSettings, telemetrySettings, reasonerSettings, llmCallSettings, agentSettings, webhookSettings)

module premiumApp 'modules/function-app-premium.bicep' = if (!isFlex) {
  name: 'function-app-premium'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    sku: premiumSku
    preWarmedInstanceCount: preWarmedInstanceCount
    minimumElasticInstanceCount: minimumElasticInstanceCount
    maximumElasticWorkerCount: maximumElasticWorkerCount
    identityId: identity.outputs.id
    storageBlobEndpoint: storage.outputs.blobEndpoint
    packageContainerName: storage.outputs.packageContainerName
    appSettings: appSettings
  }
}

module flexApp 'modules/function-app-flex.bicep' = if (isFlex) {
  name: 'function-app-flex'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    maximumInstanceCount: flexMaximumInstanceCount
    instanceMemoryMB: flexInstanceMemoryMB
    alwaysReady: flexAlwaysReady
    identityId: identity.outputs.id
    storageBlobEndpoint: storage.outputs.blobEndpoint
    packageContainerName: storage.outputs.packageContainerName
    appSettings: appSettings
  }
}

var functionAppId = isFlex ? flexApp.outputs.id : premiumApp.outputs.id

module helpdeskTopic 'modules/eventgrid-topic.bicep' = [for topic in helpdeskCustomTopics: {
  name: 'eventgrid-${topic.Name}'
  scope: rg
  params: {
    location: location
    tags: tags
    topic: topic
    customTopicName: '${abbrs.eventGridTopics}${topic.Name}-${resourceToken}'
    storageAccountName: storage.outputs.name
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    publisherPrincipalId: helpdeskPublisherPrincipalId
    appPrincipalId: identity.outputs.principalId
  }
}]

module helpdeskTopicSubscriptions 'modules/eventgrid-subscriptions.bicep' = [for (topic, i) in helpdeskCustomTopics: {
  name: 'eventgrid-subscriptions-${topic.Name}'
  scope: rg
  params: {
    topic: topic
    customTopicName: helpdeskTopic[i].outputs.name
    functionAppId: functionAppId
    subscribeFunctions: subscribeFunctions
    storageAccountName: storage.outputs.name
  }
}]

module helpdeskPartnerTopic 'modules/eventgrid-partner-topic.bicep' = [for topic in helpdeskPartnerTopics: {
  name: 'eventgrid-partner-${topic.Name}'
  scope: rg
  params: {
    topic: topic
    partnerTopicName: partnerTopicNames[topic.Name]
    functionAppId: functionAppId
    subscribeFunctions: subscribeFunctions
    storageAccountName: storage.outputs.name
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
}]

// Outputs azd stores in the environment (and `az deployment sub show` prints).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = isFlex ? flexApp.outputs.name : premiumApp.outputs.name
output AZURE_HOSTING_PLAN string = hostingPlan
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_PACKAGE_CONTAINER string = storage.outputs.packageContainerName
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output ORDERS_SERVICEBUS_NAMESPACE string = serviceBus[ordersServiceBus].outputs.fullyQualifiedNamespace
output FRAUD_SERVICEBUS_NAMESPACE string = serviceBus[fraudServiceBus].outputs.fullyQualifiedNamespace
output TRIAGE_SERVICEBUS_NAMESPACE string = serviceBus[triageServiceBus].outputs.fullyQualifiedNamespace
output FRAUD_EVENTHUBS_NAMESPACE string = eventHubsNamespace[fraudEventHubs].outputs.fullyQualifiedNamespace
output AZURE_OPENAI_ENDPOINT string = deployOpenAi ? openAi.outputs.endpoint : ''
