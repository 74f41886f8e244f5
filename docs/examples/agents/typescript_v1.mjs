// The gateway's tools from the TypeScript SDK v1 (@modelcontextprotocol/sdk).
//
//   GATEWAY_TOKEN=<jwt> node typescript_v1.mjs http://127.0.0.1:8080/mcp demo__echo '{"text":"hello"}'
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

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
