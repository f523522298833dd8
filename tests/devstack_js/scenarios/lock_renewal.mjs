// subscribe() with auto lock renewal on a 1 s lock: two slow handlers (messages sent with no
// MessageId, so the renewal depends on the broker-assigned ones) complete without losing
// their locks.
import { ServiceBusClient } from "@azure/service-bus";
import { connectionString, run, sleep } from "./common.mjs";

run(async () => {
  const client = new ServiceBusClient(connectionString);
  try {
    await client.createSender("short-lock").sendMessages([{ body: "slow-1" }, { body: "slow-2" }]);
    const receiver = client.createReceiver("short-lock");
    const completed = [];
    const errors = [];
    await new Promise((resolve, reject) => {
      setTimeout(() => reject(new Error(`timed out; errors: ${errors.join("; ")}`)), 20000);
      receiver.subscribe({
        async processMessage(message) {
          await sleep(2500);
          await receiver.completeMessage(message);
          completed.push([message.body, message.deliveryCount]);
          if (completed.length === 2) resolve();
        },
        async processError(args) { errors.push(`${args.error.name}: ${args.error.message}`); },
      }, { autoCompleteMessages: false, maxConcurrentCalls: 2,
           maxAutoLockRenewalDurationInMs: 20000 });
    });
    await receiver.close();
    return { completed: completed.sort(), errors };
  } finally {
    await client.close();
  }
});
