// Lists the tools and calls one through the gateway, with the TypeScript SDK v1
// (@modelcontextprotocol/sdk) or v2 (@modelcontextprotocol/client), for
// tests/e2e/test_mcp_clients.py.
//
//   MCP_TOKEN=<jwt> node ts_tools_client.mjs v1|v2 URL ERA TOOL ARGUMENTS_JSON
//
// ERA is "legacy" (the 2025-11-25 initialize handshake; v1 knows no other) or
// "2026-07-28" (v2 only, pinned). Prints one JSON line: {era, tools, result}.

const [sdk, url, era, toolName, argumentsJson] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${process.env.MCP_TOKEN}` };

async function connect() {
  if (sdk === 'v1') {
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
    const { StreamableHTTPClientTransport } = await import(
      '@modelcontextprotocol/sdk/client/streamableHttp.js'
    );
    const client = new Client({ name: 'gateway-test-ts-v1', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
    return { client, era: () => client.transport?.protocolVersion ?? 'legacy' };
  }
  const { Client, StreamableHTTPClientTransport } = await import('@modelcontextprotocol/client');
  const client = new Client(
    { name: 'gateway-test-ts-v2', version: '1.0.0' },
    { versionNegotiation: { mode: era === 'legacy' ? 'legacy' : { pin: era } } },
  );
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return { client, era: () => client.getNegotiatedProtocolVersion() };
}

try {
  const { client, era: negotiated } = await connect();
  const { tools } = await client.listTools();
  const result = await client.callTool({ name: toolName, arguments: JSON.parse(argumentsJson) });
  console.log(JSON.stringify({ era: negotiated(), tools: tools.map((t) => t.name), result }));
  await client.close();
  process.exit(0);
} catch (error) {
  console.error(error?.stack ?? String(error));
  process.exit(1);
}
