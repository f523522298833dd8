// Send without MessageIds, then complete, abandon (redelivered, delivery count + 1) and
// receive-and-delete; a settle after the lock expired fails and the message comes back.
import { ServiceBusClient } from "@azure/service-bus";
import { connectionString, receiveExactly, run } from "./common.mjs";

run(async () => {
  const client = new ServiceBusClient(connectionString);
  try {
    const sender = client.createSender("work");
    await sender.sendMessages([{ body: "one" }, { body: "two" }]);
    const batch = await sender.createMessageBatch();
    batch.tryAddMessage({ body: "three", applicationProperties: { n: 3 } });
    await sender.sendMessages(batch);
    const receiver = client.createReceiver("work");
    const [one, two, three] = await receiveExactly(receiver, 3);
    await receiver.completeMessage(one);
    await receiver.abandonMessage(two);
    await receiver.completeMessage(three);
    const [again] = await receiveExactly(receiver, 1);
    // devstack's expire-locks fault, then the late settle fails as on the service
    const faults = await fetch(`${process.env.DEVSTACK_FAULTS_URL}/faults/expire-locks?entity=work`,
                               { method: "POST" });
    const expired = (await faults.json()).expired;
    let lateSettle = "none";
    try { await receiver.completeMessage(again); } catch (error) { lateSettle = error.code; }
    const [redelivered] = await receiveExactly(receiver, 1);
    await receiver.completeMessage(redelivered);
    const rad = client.createReceiver("work", { receiveMode: "receiveAndDelete" });
    await sender.sendMessages({ body: "gone" });
    const [deleted] = await receiveExactly(rad, 1);
    const left = await rad.receiveMessages(1, { maxWaitTimeInMs: 500 });
    return {
      bodies: [one.body, two.body, three.body],
      messageIds: [one.messageId, two.messageId, three.messageId],
      property: three.applicationProperties.n,
      redelivered: [again.body, again.deliveryCount],
      expired,
      lateSettle,
      afterExpiry: [redelivered.body, redelivered.deliveryCount],
      deleted: deleted.body,
      left: left.length,
    };
  } finally {
    await client.close();
  }
});
