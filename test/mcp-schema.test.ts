// MCP tools as Live API declarations (src/tools/mcp/schema.ts, tool.ts):
// names, the JSON Schema subset, allow/deny globs, the stdio environment,
// and what a result becomes. Pure functions: exact outputs for exact inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SdkError, SdkErrorCode } from '@modelcontextprotocol/client';
import { allowed, declaredName, globMatch, toDeclaration, toLiveSchema } from '../src/tools/mcp/schema.js';
import { MAX_RESULT_TEXT, toMcpError, toResponse } from '../src/tools/mcp/tool.js';
import { childEnv } from '../src/tools/mcp/client.js';
import { mcpServers, parseConfig } from '../src/config.js';

test('names: <server>__<tool>, refused characters made _, longer than 64 or starting wrong refused', () => {
  assert.equal(declaredName('ha', 'HassTurnOff'), 'ha__HassTurnOff');
  assert.equal(declaredName('ha', 'assist__HassTurnOn'), 'ha__assist__HassTurnOn');
  assert.equal(declaredName('fs', 'read file/v2'), 'fs__read_file_v2');
  assert.equal(declaredName('fs', 'get.thing:x-y'), 'fs__get.thing:x-y');
  assert.equal(declaredName('fs', 'x'.repeat(60)), 'fs__' + 'x'.repeat(60)); // 64
  assert.equal(declaredName('fs', 'x'.repeat(61)), null); // 65
  assert.equal(declaredName('fs', ''), null);
});

test('globs: * and ? over the server\'s own names, deny wins, other characters literal', () => {
  assert.equal(globMatch('Hass*', 'HassTurnOn'), true);
  assert.equal(globMatch('Hass*', 'GetLiveContext'), false);
  assert.equal(globMatch('Hass?urnOn', 'HassTurnOn'), true);
  assert.equal(globMatch('a.b', 'axb'), false, 'a dot is a dot');
  assert.equal(allowed('HassTurnOn', ['*'], ['HassTurn*']), false);
  assert.equal(allowed('HassLightSet', ['*'], ['HassTurn*']), true);
  assert.equal(allowed('GetDateTime', ['Hass*'], []), false);
});

test('schema: Home Assistant\'s HassLightSet and GetLiveContext in the Live subset (anyOf string|array kept, types in capitals)', () => {
  const light = { type: 'object', properties: { name: { type: 'string' }, domain: { type: 'array', items: { type: 'string' } }, temperature: { type: 'integer', minimum: 0 },
    brightness: { type: 'integer', minimum: 0, maximum: 100, description: 'The brightness percentage' } } };
  assert.deepEqual(toLiveSchema(light), { dropped: [], schema: { type: 'OBJECT', properties: {
    name: { type: 'STRING' }, domain: { type: 'ARRAY', items: { type: 'STRING' } }, temperature: { type: 'INTEGER', minimum: 0 },
    brightness: { type: 'INTEGER', minimum: 0, maximum: 100, description: 'The brightness percentage' } } } });
  const ctx = { type: 'object', properties: { name: { type: 'string', description: 'Filter' }, domain: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] } } };
  assert.deepEqual(toLiveSchema(ctx).schema, { type: 'OBJECT', properties: { name: { type: 'STRING', description: 'Filter' },
    domain: { anyOf: [{ type: 'STRING' }, { type: 'ARRAY', items: { type: 'STRING' } }] } } });
});

test('schema: what zod and other servers send is converted or dropped, and each drop is named', () => {
  const s = {
    $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object', additionalProperties: false, title: 'Args',
    $defs: { Room: { type: 'string', enum: ['kitchen', 'hall'] } },
    properties: {
      room: { $ref: '#/$defs/Room' },
      note: { type: ['string', 'null'], default: 'x', format: 'email' },
      level: { anyOf: [{ type: 'number' }, { type: 'null' }] },
      mode: { const: 'fast' },
      count: { allOf: [{ type: 'integer' }] },
      n: { type: 'integer', enum: [1, 2] },
      free: { type: 'object', additionalProperties: true },
      'bad-name': { type: 'string' },
      anything: {},
    },
    required: ['room', 'free', 'bad-name', 'n'],
  };
  const { schema, dropped } = toLiveSchema(s);
  assert.deepEqual(schema, { type: 'OBJECT', properties: {
    room: { type: 'STRING', enum: ['kitchen', 'hall'] },
    note: { type: 'STRING', nullable: true },
    level: { type: 'NUMBER', nullable: true },
    mode: { type: 'STRING', enum: ['fast'] },
    count: { type: 'INTEGER' },
    n: { type: 'INTEGER' },
  }, required: ['room', 'n'] });
  assert.deepEqual(dropped, ['n: enum of non-strings', 'free: an object without properties', 'bad-name: a parameter name the API refuses', 'anything: no type']);
  assert.equal(JSON.stringify(schema).includes('additionalProperties'), false, 'additionalProperties inside parameters closes a Live session (1007)');
});

test('schema: a tool with no arguments gets no parameters (the API refuses an empty OBJECT); a recursive $ref is cut', () => {
  assert.deepEqual(toLiveSchema({ type: 'object', properties: {} }), { schema: null, dropped: [] });
  assert.deepEqual(toLiveSchema(undefined).schema, null);
  const tree = { type: 'object', $defs: { Node: { type: 'object', properties: { label: { type: 'string' }, child: { $ref: '#/$defs/Node' } } } }, properties: { root: { $ref: '#/$defs/Node' } } };
  const r = toLiveSchema(tree);
  assert.deepEqual(r.schema, { type: 'OBJECT', properties: { root: { type: 'OBJECT', properties: { label: { type: 'STRING' } } } } });
  assert.deepEqual(r.dropped, ['root.child: $ref #/$defs/Node (recursive)']);
  const d = toDeclaration('ha', { name: 'GetDateTime', description: 'Provides the current date and time.', inputSchema: { type: 'object', properties: {} } });
  assert.deepEqual(d, { declaration: { name: 'ha__GetDateTime', description: 'Provides the current date and time.' }, dropped: [] });
  assert.match((toDeclaration('ha', { name: 'x'.repeat(70) }) as { error: string }).error, /cannot be made a valid function name/);
  assert.match((toDeclaration('ha', { name: 'big', inputSchema: { type: 'object', properties: Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`p${i}`, { type: 'string', description: 'd'.repeat(40) }])) } }) as { error: string }).error, /larger than 16384 bytes/);
});

test('schema: property names that are also Object.prototype names stay plain properties, and `required` names only declared properties', () => {
  // As a server's JSON arrives: JSON.parse makes "__proto__" an own key.
  const input = JSON.parse('{"type":"object","properties":{"__proto__":{"type":"string"},"name":{"type":"string"}},"required":["constructor","type","name","__proto__","toString"]}');
  const { schema } = toLiveSchema(input);
  assert.deepEqual(Object.keys(schema!.properties!), ['__proto__', 'name']);
  assert.equal(Object.getPrototypeOf(schema!.properties), Object.prototype, 'the properties map is a plain object');
  assert.deepEqual(schema!.required, ['name', '__proto__']);
  assert.equal(JSON.stringify(schema), '{"type":"OBJECT","properties":{"__proto__":{"type":"STRING"},"name":{"type":"STRING"}},"required":["name","__proto__"]}');
});

test('results: text joined, structured content kept, other blocks named, text capped at 64 KiB; isError and failures become sentences; an answer that cannot be read is not a server gone', () => {
  assert.deepEqual(toResponse({ content: [{ type: 'text', text: 'a' }, { type: 'image', data: 'xx', mimeType: 'image/png' }, { type: 'text', text: 'b' }], structuredContent: { ok: 1 } }, 'ha'),
    { output: 'a\n[image left out: the speaker passes text only]\nb', structured: { ok: 1 } });
  const big = toResponse({ content: [{ type: 'text', text: 'x'.repeat(200_000) }] }, 'ha').output as string;
  assert.equal(big.startsWith('x'.repeat(MAX_RESULT_TEXT) + '… (cut: the answer was 200000 characters)'), true);
  assert.equal(big.length, MAX_RESULT_TEXT + '… (cut: the answer was 200000 characters)'.length);
  assert.throws(() => toResponse({ isError: true, content: [{ type: 'text', text: 'Error calling tool: no entity named Garage' }] }, 'ha'), { message: 'Error calling tool: no entity named Garage', errorClass: 'mcp-tool-error' } as never);
  assert.equal(toMcpError(Object.assign(new Error('Request timed out'), { code: 'REQUEST_TIMEOUT' }), 'ha', 2).message, 'the ha server did not answer within 2 s');
  assert.equal(toMcpError(Object.assign(new Error('MCP error -32602: bad'), { code: -32602 }), 'ha', 2).errorClass, 'mcp-protocol');
  assert.equal(toMcpError(new TypeError('fetch failed'), 'ha', 2).errorClass, 'mcp-gone');
  // An answer that came but cannot be read is not a server gone (that would reconnect, and fail its calls meanwhile):
  // the errors as the SDK (v2) raises them.
  assert.deepEqual(((e) => [e.errorClass, e.message])(toMcpError(new SdkError(SdkErrorCode.InvalidResult, 'Invalid result for tools/call: [ { "expected": "array" } ]'), 'ha', 2)),
    ['mcp-bad-answer', 'the ha server\'s answer was not a valid MCP result']);
  assert.deepEqual(((e) => [e.errorClass, e.message])(toMcpError(new SyntaxError('Unexpected end of JSON input'), 'ha', 2)), ['mcp-bad-answer', 'the ha server\'s answer could not be read (not JSON)']);
  assert.equal(toMcpError(new SdkError(SdkErrorCode.ClientHttpUnexpectedContent, 'Unexpected content type: text/plain'), 'ha', 2).errorClass, 'mcp-bad-answer');
  // A JSON-RPC error is the server's refusal in its own words, even when they mention JSON.
  assert.deepEqual(((e) => [e.errorClass, e.message])(toMcpError(Object.assign(new Error('MCP error -32602: argument name is not valid JSON'), { code: -32602 }), 'ha', 2)),
    ['mcp-protocol', 'the ha server refused the call: MCP error -32602: argument name is not valid JSON']);
  // An HTTP error (the SDK's plain Error) stays a server to reconnect to.
  assert.equal(toMcpError(new Error('Error POSTing to endpoint (HTTP 500): Internal Server Error'), 'ha', 2).errorClass, 'mcp-gone');
});

test('a stdio server\'s environment: no API keys, tokens, secrets or passwords; its own env added', () => {
  const env = childEnv({ MEMORY_FILE_PATH: '/tmp/m.jsonl' }, { PATH: '/bin', HOME: '/h', GEMINI_API_KEY: 'k', GOOGLE_API_KEY: 'k', PICOVOICE_ACCESS_KEY: 'k', CREDENTIALS_DIRECTORY: '/run/c',
    HA_TOKEN: 't', GITHUB_PERSONAL_ACCESS_TOKEN: 't', AWS_SECRET_ACCESS_KEY: 's', DB_PASSWORD: 'p', LANG: 'C' });
  assert.deepEqual(env, { PATH: '/bin', HOME: '/h', LANG: 'C', MEMORY_FILE_PATH: '/tmp/m.jsonl' });
});

test('config: tools.home_assistant becomes the server ha at <url>/api/mcp; url xor command; a name used twice is refused', () => {
  const c = parseConfig({ tools: { home_assistant: { url: 'http://ha.local:8123/', token_file: '/etc/live-speaker/ha-token', deny: ['HassBroadcast'] } } }, null, []);
  assert.deepEqual(mcpServers(c), [{ name: 'ha', url: 'http://ha.local:8123/api/mcp', headers: {}, token_file: '/etc/live-speaker/ha-token', command: null, env: {}, allow: ['*'], deny: ['HassBroadcast'], timeout_s: 15, non_blocking: false }]);
  assert.throws(() => parseConfig({ tools: { mcp: [{ name: 'x', url: 'http://a/', command: ['b'] }] } }, null, []), /exactly one of url and command/);
  assert.throws(() => parseConfig({ tools: { mcp: [{ name: 'x' }] } }, null, []), /exactly one of url and command/);
  assert.throws(() => parseConfig({ tools: { mcp: [{ name: 'Ha', url: 'http://a/' }] } }, null, []), /short prefix/);
  assert.throws(() => parseConfig({ tools: { mcp: [{ name: 'a', url: 'http://a/' }, { name: 'a', command: ['x'] }] } }, null, []), /used twice/);
  assert.throws(() => parseConfig({ tools: { mcp: [{ name: 'ha', command: ['x'] }], home_assistant: { url: 'http://a', token_file: '/t' } } }, null, []), /already has a server named ha/);
});
