// Shared by the scenarios: the devstack connection string, and one JSON line on stdout.
export const connectionString = process.env.DEVSTACK_CONNECTION_STRING;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Receive until `count` messages arrived (a batch may hold fewer), or fail. */
export async function receiveExactly(receiver, count, maxWaitTimeInMs = 5000) {
  const got = [];
  while (got.length < count) {
    const batch = await receiver.receiveMessages(count - got.length, { maxWaitTimeInMs });
    if (batch.length === 0) throw new Error(`only ${got.length} of ${count} messages arrived`);
    got.push(...batch);
  }
  return got;
}

/** Run `scenario`, print what it returns as JSON; on failure print the error, exit 1. */
export async function run(scenario) {
  try {
    const result = await scenario();
    console.log(JSON.stringify(result));
    process.exit(0);
  } catch (error) {
    console.log(JSON.stringify({ error: `${error?.name}: ${error?.message}`, code: error?.code }));
    process.exit(1);
  }
}
