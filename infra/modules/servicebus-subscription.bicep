// One topic subscription and its rules (correlation and SQL filters, SQL actions), configured
// from infra/entities/servicebus.json.
param namespaceName string
param topicName string

@description('Subscription entry in the emulator Config.json shape: { Name, Properties, Rules }.')
param subscription object

// The emulator schema's defaults, so an omitted property means the same on Azure as locally.
var defaults = {
  DeadLetteringOnMessageExpiration: false
  DefaultMessageTimeToLive: 'PT1H'
  ForwardDeadLetteredMessagesTo: ''
  ForwardTo: ''
  LockDuration: 'PT1M'
  MaxDeliveryCount: 3
  RequiresSession: false
}
var settings = union(defaults, contains(subscription, 'Properties') ? subscription.Properties : {})
var rules = contains(subscription, 'Rules') ? subscription.Rules : []

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  parent: namespace
  name: topicName
}

resource entity 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: topic
  name: subscription.Name
  properties: {
    deadLetteringOnMessageExpiration: settings.DeadLetteringOnMessageExpiration
    defaultMessageTimeToLive: settings.DefaultMessageTimeToLive
    forwardDeadLetteredMessagesTo: empty(settings.ForwardDeadLetteredMessagesTo) ? null : settings.ForwardDeadLetteredMessagesTo
    forwardTo: empty(settings.ForwardTo) ? null : settings.ForwardTo
    lockDuration: settings.LockDuration
    maxDeliveryCount: settings.MaxDeliveryCount
    requiresSession: settings.RequiresSession
  }
}

// Azure gives every new subscription a '$Default' rule that matches everything; where the entity
// file declares rules, it is overwritten with a filter that matches nothing, so only they route.
resource defaultRule 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = if (!empty(rules)) {
  parent: entity
  name: '$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: '1=0'
    }
  }
}

resource rule 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for item in rules: {
  parent: entity
  name: item.Name
  properties: {
    filterType: (item.Properties.FilterType == 'Sql') ? 'SqlFilter' : 'CorrelationFilter'
    sqlFilter: (item.Properties.FilterType == 'Sql') ? {
      sqlExpression: item.Properties.SqlFilter.SqlExpression
    } : null
    correlationFilter: (item.Properties.FilterType == 'Correlation') ? {
      contentType: contains(item.Properties.CorrelationFilter, 'ContentType') ? item.Properties.CorrelationFilter.ContentType : null
      correlationId: contains(item.Properties.CorrelationFilter, 'CorrelationId') ? item.Properties.CorrelationFilter.CorrelationId : null
      label: contains(item.Properties.CorrelationFilter, 'Label') ? item.Properties.CorrelationFilter.Label : null
      messageId: contains(item.Properties.CorrelationFilter, 'MessageId') ? item.Properties.CorrelationFilter.MessageId : null
      properties: contains(item.Properties.CorrelationFilter, 'Properties') ? item.Properties.CorrelationFilter.Properties : null
      replyTo: contains(item.Properties.CorrelationFilter, 'ReplyTo') ? item.Properties.CorrelationFilter.ReplyTo : null
      replyToSessionId: contains(item.Properties.CorrelationFilter, 'ReplyToSessionId') ? item.Properties.CorrelationFilter.ReplyToSessionId : null
      sessionId: contains(item.Properties.CorrelationFilter, 'SessionId') ? item.Properties.CorrelationFilter.SessionId : null
      to: contains(item.Properties.CorrelationFilter, 'To') ? item.Properties.CorrelationFilter.To : null
    } : null
    action: contains(item.Properties, 'Action') ? {
      sqlExpression: item.Properties.Action.SqlExpression
    } : null
  }
  dependsOn: [
    defaultRule
  ]
}]

output name string = entity.name
