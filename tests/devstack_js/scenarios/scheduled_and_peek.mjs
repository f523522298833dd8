// Scheduled messages: visible to peek as scheduled, cancellable, delivered at their time;
// peek locks and removes nothing.
import { ServiceBusClient } from "@azure/service-bus";
import { connectionString, receiveExactly, run } from "./common.mjs";

run(async () => {
  const client = new ServiceBusClient(connectionString);
  try {
    const sender = client.createSender("work");
    const due = new Date(Date.now() + 1500);
    const [kept] = await sender.scheduleMessages({ body: "on time" }, due);
    const [cancelled] = await sender.scheduleMessages({ body: "cancelled" }, due);
    await sender.cancelScheduledMessages([cancelled]);
    await sender.sendMessages({ body: "now" });
    const receiver = client.createReceiver("work");
    const peeked = await receiver.peekMessages(10);
    const [now] = await receiveExactly(receiver, 1);
    await receiver.completeMessage(now);
    const [onTime] = await receiveExactly(receiver, 1, 10000);
    await receiver.completeMessage(onTime);
    return {
      peeked: peeked.map((m) => [m.body, m.state]),
      onTime: [onTime.body, onTime.enqueuedTimeUtc >= new Date(due.getTime() - 5)],
      scheduledId: typeof onTime.messageId,
      keptSequence: kept.toString() === onTime.sequenceNumber.toString(),
    };
  } finally {
    await client.close();
  }
});
