"""The triage agent: helpdesk tickets from Event Grid, classified by the model, routed to
teams on Service Bus (see README.md)."""
