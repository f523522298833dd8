// Event Hubs: partition ids and properties, a batch to one partition, a partition key
// keeping its events together, and reading a partition from the start.
import {
  EventHubConsumerClient, EventHubProducerClient, earliestEventPosition,
} from "@azure/event-hubs";
import { connectionString, run } from "./common.mjs";

async function readPartition(partitionId, count) {
  const consumer = new EventHubConsumerClient("$Default", connectionString, "eh1");
  const got = [];
  try {
    await new Promise((resolve, reject) => {
      const subscription = consumer.subscribe(partitionId, {
        async processEvents(events) {
          got.push(...events);
          if (got.length >= count) subscription.close().then(resolve, reject);
        },
        async processError(error) { reject(error); },
      }, { startPosition: earliestEventPosition, maxBatchSize: 10, maxWaitTimeInSeconds: 1 });
    });
  } finally {
    await consumer.close();
  }
  return got;
}

run(async () => {
  const producer = new EventHubProducerClient(connectionString, "eh1");
  try {
    const ids = await producer.getPartitionIds();
    const batch = await producer.createBatch({ partitionId: "1" });
    for (const body of ["p1-a", "p1-b"]) batch.tryAdd({ body });
    await producer.sendBatch(batch);
    const keyed = await producer.createBatch({ partitionKey: "customer-7" });
    for (const body of ["k-1", "k-2", "k-3"]) keyed.tryAdd({ body });
    await producer.sendBatch(keyed);
    const props = await producer.getPartitionProperties("1");
    const one = await readPartition("1", 2);
    const counts = {};
    for (const id of ids) {
      counts[id] = (await producer.getPartitionProperties(id)).lastEnqueuedSequenceNumber + 1;
    }
    return {
      ids,
      partitionOne: one.slice(0, 2).map((e) => e.body),
      lastSequence: props.lastEnqueuedSequenceNumber,
      counts,
    };
  } finally {
    await producer.close();
  }
});
