// A session receiver gets only its session's messages, in order, and keeps session state;
// the next-available-session receiver finds the other session.
import { ServiceBusClient } from "@azure/service-bus";
import { connectionString, receiveExactly, run } from "./common.mjs";

run(async () => {
  const client = new ServiceBusClient(connectionString);
  try {
    await client.createSender("sessions").sendMessages([
      { body: "a1", sessionId: "a" }, { body: "b1", sessionId: "b" },
      { body: "a2", sessionId: "a" }]);
    const a = await client.acceptSession("sessions", "a");
    const got = await receiveExactly(a, 2);
    for (const message of got) await a.completeMessage(message);
    await a.setSessionState("step-2");
    const state = await a.getSessionState();
    await a.close();
    let refused = "none";
    try { await client.createSender("sessions").sendMessages({ body: "no session" }); }
    catch (error) { refused = error.code ?? error.name; }
    const next = await client.acceptNextSession("sessions");
    const [b] = await receiveExactly(next, 1);
    await next.completeMessage(b);
    return { a: got.map((m) => m.body), state: String(state), next: [next.sessionId, b.body],
             refused };
  } finally {
    await client.close();
  }
});
