// An MCP server's tool as one of the speaker's tools (src/tools/types.ts
// `Tool`): the ToolDispatcher runs it like a local one (concurrency,
// cancellation, log.transcripts, ctl watch). The answer: the text content
// (capped) and any structured content; an error (isError, a JSON-RPC error,
// a timeout, a server gone) is thrown as a sentence the model can say.
import { Behavior, FunctionResponseScheduling, type FunctionDeclaration } from '@google/genai';
import type { Tool } from '../types.js';

/** Text sent back to the model from one call, at most (the rest cut, and the model told). */
export const MAX_RESULT_TEXT = 64 * 1024;
/** Structured content larger than this (JSON) is left out (the model is told). */
const MAX_STRUCTURED = 64 * 1024;
/** A response body (HTTP), one SSE event, or a message (stdio) larger than this is refused (client.ts): a server cannot make us hold more. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** What calls a tool on its server: McpServer in client.ts. */
export interface McpCaller { readonly name: string; call(tool: string, args: Record<string, unknown>, signal: AbortSignal): Promise<unknown> }

export class McpCallError extends Error {
  /** `detail`: what the library said, for the journal (the message is for the model). */
  constructor(readonly errorClass: string, message: string, readonly detail?: string) { super(message); }
}

/** `nonBlocking` (the server's non_blocking): declared and answered as a user command with non_blocking is (src/tools/command.ts). */
export function mcpTool(server: McpCaller, mcpName: string, declaration: FunctionDeclaration, nonBlocking = false): Tool {
  return {
    declaration: nonBlocking ? { ...declaration, behavior: Behavior.NON_BLOCKING } : declaration,
    ...(nonBlocking ? { scheduling: FunctionResponseScheduling.WHEN_IDLE } : {}),
    run: async (args, ctx) => toResponse(await server.call(mcpName, args, ctx.signal), server.name),
  };
}

const cut = (s: string, max: number) => (s.length > max ? `${s.slice(0, max)}… (cut: the answer was ${s.length} characters)` : s);

/** A tools/call result as the function response; isError thrown as the error. */
export function toResponse(r: unknown, server: string): Record<string, unknown> {
  const res = (r ?? {}) as { content?: unknown; structuredContent?: unknown; isError?: unknown };
  const parts: string[] = [];
  for (const c of Array.isArray(res.content) ? res.content : []) {
    const b = c as { type?: unknown; text?: unknown; resource?: { text?: unknown; uri?: unknown }; uri?: unknown };
    if (b?.type === 'text' && typeof b.text === 'string') parts.push(b.text);
    else if (b?.type === 'resource' && typeof b.resource?.text === 'string') parts.push(b.resource.text);
    else if (b?.type === 'resource_link' && typeof b.uri === 'string') parts.push(`[link: ${b.uri}]`);
    else parts.push(`[${typeof b?.type === 'string' ? b.type : 'content'} left out: the speaker passes text only]`);
  }
  const text = cut(parts.join('\n'), MAX_RESULT_TEXT);
  if (res.isError === true) throw new McpCallError('mcp-tool-error', text ? cut(text, 2000) : `the ${server} server reported an error`);
  const out: Record<string, unknown> = { output: text };
  if (res.structuredContent !== undefined) {
    const json = JSON.stringify(res.structuredContent);
    if (json !== undefined && json.length <= MAX_STRUCTURED) out.structured = res.structuredContent;
    else out.note = `structured content left out: larger than ${MAX_STRUCTURED} bytes`;
  }
  return out;
}

/** A failed call (not isError: the protocol, the transport, the clock) as a sentence for the model and a class for the journal. */
export function toMcpError(e: unknown, server: string, timeoutS: number): McpCallError {
  if (e instanceof McpCallError) return e;
  const err = e as { name?: string; code?: unknown; message?: string };
  const msg = String(err?.message ?? e).slice(0, 500);
  if (/answer is larger than \d+ bytes/.test(msg)) return new McpCallError('mcp-too-large', `the ${server} server's answer was too large (over ${MAX_MESSAGE_BYTES / 1024 / 1024} MiB) and was refused`);
  if (err?.code === 'REQUEST_TIMEOUT') return new McpCallError('mcp-timeout', `the ${server} server did not answer within ${timeoutS} s`);
  // An answer that came but cannot be read (not JSON, nested past the parser, of another content type, not a result of
  // the shape MCP defines): the server is there, so the connection is kept (a reconnect would make every tool of it fail
  // through the back-off for nothing). The model gets a short sentence; the journal the detail (ToolDispatcher).
  // (A JSON-RPC error, numeric code, is the server's own refusal, below, whatever its text says.)
  if (typeof err?.code !== 'number' && (err?.code === 'CLIENT_HTTP_UNEXPECTED_CONTENT' || /SyntaxError|RangeError/.test(String(err?.name)) || /is not valid JSON/.test(msg))) {
    return new McpCallError('mcp-bad-answer', `the ${server} server's answer could not be read (not JSON)`, msg);
  }
  if (err?.code === 'INVALID_RESULT' || err?.code === 'UNSUPPORTED_RESULT_TYPE' || /ZodError/.test(String(err?.name))) {
    return new McpCallError('mcp-bad-answer', `the ${server} server's answer was not a valid MCP result`, msg);
  }
  if (err?.name === 'AbortError' || /abort/i.test(msg)) return new McpCallError('mcp-cancelled', 'the call was cancelled');
  if (typeof err?.code === 'number') return new McpCallError('mcp-protocol', `the ${server} server refused the call: ${msg}`);
  return new McpCallError('mcp-gone', `the ${server} server cannot be reached (${msg})`);
}
