// The gateway's tools from the TypeScript SDK v2 (@modelcontextprotocol/client),
// which speaks both MCP eras; the gateway serves both on the same URL.
//
//   GATEWAY_TOKEN=<jwt> node typescript_v2.mjs http://127.0.0.1:8080/mcp demo__echo '{"text":"hello"}'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, tool, args] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.GATEWAY_TOKEN}` } },
});
const client = new Client({ name: 'my-agent', version: '1.0.0' });
await client.connect(transport);

const { tools } = await client.listTools();
console.log(tools.map((t) => t.name).join(' '));
const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
console.log(JSON.stringify(result));
await client.close();
