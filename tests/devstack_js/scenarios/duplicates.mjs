// Duplicate detection drops a second send with the same MessageId inside the window.
import { ServiceBusClient } from "@azure/service-bus";
import { connectionString, run } from "./common.mjs";

run(async () => {
  const client = new ServiceBusClient(connectionString);
  try {
    const sender = client.createSender("dedupe");
    await sender.sendMessages({ body: "first", messageId: "order-1" });
    await sender.sendMessages({ body: "again", messageId: "order-1" });
    await sender.sendMessages({ body: "other", messageId: "order-2" });
    const receiver = client.createReceiver("dedupe", { receiveMode: "receiveAndDelete" });
    const got = [];
    for (;;) {
      const batch = await receiver.receiveMessages(10, { maxWaitTimeInMs: 1000 });
      if (batch.length === 0) break;
      got.push(...batch);
    }
    return { got: got.map((m) => [m.messageId, m.body]) };
  } finally {
    await client.close();
  }
});
