// Topic subscriptions with a correlation filter and a SQL filter with an action.
import { ServiceBusClient } from "@azure/service-bus";
import { connectionString, run } from "./common.mjs";

async function drain(client, subscription) {
  const receiver = client.createReceiver("events", subscription,
                                         { receiveMode: "receiveAndDelete" });
  const got = [];
  for (;;) {
    const batch = await receiver.receiveMessages(10, { maxWaitTimeInMs: 1000 });
    if (batch.length === 0) return got;
    got.push(...batch);
  }
}

run(async () => {
  const client = new ServiceBusClient(connectionString);
  try {
    await client.createSender("events").sendMessages([
      { body: "invoice", applicationProperties: { team: "billing" } },
      { body: "page", subject: "vip-1", applicationProperties: { priority: "P1", size: 1 } },
      { body: "json", contentType: "application/json" },
      { body: "noise", applicationProperties: { team: "ops", priority: "P3" } },
    ]);
    const billing = await drain(client, "billing");
    const urgent = await drain(client, "urgent");
    const json = await drain(client, "json");
    const all = await drain(client, "all");
    return {
      billing: billing.map((m) => m.body),
      urgent: urgent.map((m) => [m.body, m.to, m.applicationProperties.routed]),
      json: json.map((m) => m.body),
      all: all.length,
    };
  } finally {
    await client.close();
  }
});
