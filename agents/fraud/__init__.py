"""The fraud agent: scores the payment stream (Event Hubs `fraud-payments`) in batches,
effectively once, and raises `fraud.alert.raised` for the orders saga to compensate."""
