// Dead-letter with a reason, and MaxDeliveryCount moving a message to the dead-letter queue.
import { ServiceBusClient } from "@azure/service-bus";
import { connectionString, receiveExactly, run } from "./common.mjs";

run(async () => {
  const client = new ServiceBusClient(connectionString);
  try {
    await client.createSender("work").sendMessages({ body: "poison" });
    const receiver = client.createReceiver("work");
    const [poison] = await receiveExactly(receiver, 1);
    await receiver.deadLetterMessage(poison, {
      deadLetterReason: "invalid", deadLetterErrorDescription: "no order id" });
    await client.createSender("two-tries").sendMessages({ body: "flaky" });
    const tries = client.createReceiver("two-tries");
    for (let i = 0; i < 2; i++) await tries.abandonMessage((await receiveExactly(tries, 1))[0]);
    const dead = client.createReceiver("work", { subQueueType: "deadLetter" });
    const [letter] = await receiveExactly(dead, 1);
    await dead.completeMessage(letter);
    const deadTries = client.createReceiver("two-tries", { subQueueType: "deadLetter" });
    const [exhausted] = await receiveExactly(deadTries, 1);
    return {
      letter: [letter.body, letter.deadLetterReason, letter.deadLetterErrorDescription],
      exhausted: [exhausted.body, exhausted.deadLetterReason],
    };
  } finally {
    await client.close();
  }
});
