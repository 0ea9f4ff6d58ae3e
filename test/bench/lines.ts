// JSON lines from a child's stdout (the daemon's log, helper processes).
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** Calls onJson for each line that parses as JSON, onOther for any other line. */
export function jsonLines(stream: Readable, onJson: (o: any) => void, onOther: (line: string) => void = () => undefined): void {
  createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
    let o: unknown;
    try { o = JSON.parse(line); } catch { onOther(line); return; }
    onJson(o);
  });
}
