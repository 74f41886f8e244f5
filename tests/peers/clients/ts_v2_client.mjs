// One MCP interaction per case through the gateway with the TypeScript SDK v2 client
// (@modelcontextprotocol/client), for tests/e2e/test_mcp_everything.py.
//
//   MCP_TOKEN=<jwt> node ts_v2_client.mjs URL ERA CASE[,CASE...] [TOOL_PREFIX]
//
// ERA is "legacy" (the 2025-11-25 initialize handshake) or "2026-07-28" (pinned, sessionless).
// Each CASE (below) runs on its own fresh connection, finds what it uses by listing first
// (so it works on the aggregated /mcp, where names carry TOOL_PREFIX, and on
// /mcp/{upstream}), and prints one JSON line: {"case", "ok": true, "seen": {...}} or
// {"case", "ok": false, "error"}. Every wait is bounded (DEADLINE_MS); nothing sleeps.

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, era, caseList, prefix = ''] = process.argv.slice(2);
const DEADLINE_MS = 15000;
const LOG_ATTEMPTS = 3; // starts of server-everything's simulated logging (the logging case)
const legacy = era === 'legacy';

async function runCase(testCase) {
  const client = new Client(
    { name: 'gateway-test-ts-v2', version: '1.0.0' },
    {
      capabilities: { elicitation: { form: {} }, sampling: {}, roots: { listChanged: true } },
      versionNegotiation: { mode: legacy ? 'legacy' : { pin: era } },
    },
  );
  const seen = { elicitation: [], sampling: [], roots: 0 };
  client.setRequestHandler('elicitation/create', async (request) => {
    seen.elicitation.push(request.params.message);
    return { action: 'accept', content: { name: 'Ada Lovelace' } };
  });
  client.setRequestHandler('sampling/createMessage', async (request) => {
    seen.sampling.push(request.params.messages.length);
    return {
      role: 'assistant',
      content: { type: 'text', text: 'sampled by the test client' },
      model: 'test-model',
      stopReason: 'endTurn',
    };
  });
  client.setRequestHandler('roots/list', async () => {
    seen.roots += 1;
    return { roots: [{ uri: 'file:///workspace/gateway-test', name: 'gateway-test' }] };
  });

  function waitFor(method, predicate = () => true) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${method} within ${DEADLINE_MS} ms`)),
        DEADLINE_MS,
      );
      client.setNotificationHandler(method, (notification) => {
        if (predicate(notification)) {
          clearTimeout(timer);
          resolve(notification.params);
        }
      });
    });
  }

  function text(result) {
    return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
  }

  async function tool(suffix) {
    const { tools } = await client.listTools();
    const found = tools.find((t) => t.name === prefix + suffix);
    if (!found) throw new Error(`no tool ${prefix + suffix} in ${tools.map((t) => t.name)}`);
    return found.name;
  }

  async function call(suffix, args = {}, meta = undefined) {
    const params = { name: await tool(suffix), arguments: args, ...(meta && { _meta: meta }) };
    const result = await client.callTool(params);
    if (result.isError) throw new Error(`${suffix} failed: ${text(result)}`);
    return text(result);
  }

  async function firstResource() {
    const { resources } = await client.listResources();
    if (!resources?.length) throw new Error('no resources listed');
    return resources[0].uri;
  }

  async function prompt(suffix) {
    const { prompts } = await client.listPrompts();
    const found = prompts.find((p) => p.name.endsWith(suffix));
    if (!found) throw new Error(`no prompt *${suffix} in ${prompts.map((p) => p.name)}`);
    return found.name;
  }

  const cases = {
    async tools() {
      const { tools } = await client.listTools();
      return {
        tools: tools.map((t) => t.name),
        echo: await call('echo', { message: 'hello from ts v2' }),
        sum: await call('get-sum', { a: 2, b: 3 }),
      };
    },
    async resources() {
      const uri = await firstResource();
      const { resourceTemplates } = await client.listResourceTemplates();
      const read = await client.readResource({ uri });
      return {
        templates: resourceTemplates.map((t) => t.uriTemplate),
        read: read.contents.map((c) => c.uri),
      };
    },
    async subscribe() {
      const uri = await firstResource();
      const updated = waitFor('notifications/resources/updated', (n) => n.params.uri === uri);
      let subscription;
      if (legacy) await client.subscribeResource({ uri });
      else subscription = await client.listen({ resourceSubscriptions: [uri] });
      // server-everything sends updates for subscribed resources while this toggle is on.
      if ((await call('toggle-subscriber-updates')).includes('Stopped')) await call('toggle-subscriber-updates');
      const params = await updated;
      await subscription?.close();
      return { subscribed: uri, updated: params.uri };
    },
    async prompts() {
      const simple = await client.getPrompt({ name: await prompt('simple-prompt') });
      const args = await client.getPrompt({ name: await prompt('args-prompt'), arguments: { city: 'Paris' } });
      return { simple: simple.messages.length, args: JSON.stringify(args.messages).includes('Paris') };
    },
    async completion() {
      const name = await prompt('completable-prompt');
      const result = await client.complete({
        ref: { type: 'ref/prompt', name },
        argument: { name: 'department', value: 'E' },
      });
      return { values: result.completion.values };
    },
    async logging() {
      if (legacy) {
        const message = waitFor('notifications/message');
        await client.setLoggingLevel('debug');
        if ((await call('toggle-simulated-logging')).includes('Stopped')) {
          await call('toggle-simulated-logging');
        }
        const params = await message;
        return { level: params.level, data: params.data };
      }
      // 2026-07-28: no logging/setLevel; a request asks for logs with a logLevel in its
      // _meta (this SDK has no option for it; its envelope keeps the keys given), and
      // a message the upstream sends while the call is in flight comes on the call's
      // own stream, before its result. One more round trip after the call, and every
      // such message has been handled: no waiting. server-everything sends its first
      // message on its session's stream of unrelated messages, which over HTTP can
      // reach the gateway after the call's result (then it belongs to no request):
      // starting the logging again sends another, a bounded number of times (as
      // tests/e2e/everything_cases.py does).
      const logs = [];
      client.setNotificationHandler('notifications/message', (n) => logs.push(n.params));
      const meta = { 'io.modelcontextprotocol/logLevel': 'debug' };
      for (let attempt = 0; attempt < LOG_ATTEMPTS && !logs.length; attempt++) {
        if ((await call('toggle-simulated-logging', {}, meta)).includes('Stopped')) {
          await call('toggle-simulated-logging', {}, meta);
        }
        await client.listTools();
      }
      if (!logs.length) throw new Error(`no notifications/message on the call stream in ${LOG_ATTEMPTS} starts`);
      return { level: logs[0].level, data: logs[0].data };
    },
    async elicitation() {
      const result = await call('trigger-elicitation-request');
      return { asked: seen.elicitation.length, result };
    },
    async sampling() {
      const result = await call('trigger-sampling-request', { prompt: 'Say hi', maxTokens: 20 });
      return { asked: seen.sampling.length, result };
    },
    async roots() {
      const result = await call('get-roots-list');
      return { asked: seen.roots, result };
    },
  };

  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_TOKEN}` } },
  });
  await client.connect(transport);
  try {
    return { era: client.getNegotiatedProtocolVersion(), ...(await cases[testCase]()) };
  } finally {
    await client.close();
  }
}

for (const testCase of caseList.split(',')) {
  try {
    console.log(JSON.stringify({ case: testCase, ok: true, seen: await runCase(testCase) }));
  } catch (error) {
    console.log(JSON.stringify({ case: testCase, ok: false, error: error?.stack ?? String(error) }));
  }
}
process.exit(0);
