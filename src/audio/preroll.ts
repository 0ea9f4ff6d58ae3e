// A ring of the most recent capture audio, kept only in memory while idle, so
// that a press (or wake word) can include the moment just before it.
export class PrerollBuffer {
  private frames: Buffer[] = [];
  private bytes = 0;
  private readonly maxBytes: number;
  /** Bytes dropped from the front since the last clear (the ring was full). */
  dropped = 0;

  constructor(rate: number, ms: number) {
    this.maxBytes = Math.floor((rate * ms) / 1000) * 2;
  }

  push(frame: Buffer): void {
    if (this.maxBytes === 0) return;
    this.frames.push(frame);
    this.bytes += frame.length;
    // Drop whole frames from the front, then trim the oldest one to the exact size.
    const before = this.bytes;
    while (this.bytes - this.frames[0].length >= this.maxBytes) this.bytes -= this.frames.shift()!.length;
    if (this.bytes > this.maxBytes) {
      const cut = this.bytes - this.maxBytes;
      this.frames[0] = this.frames[0].subarray(cut);
      this.bytes -= cut;
    }
    this.dropped += before - this.bytes;
  }

  /** The newest `bytes` held (all by default), oldest first; the buffer is emptied. */
  drain(bytes = Infinity): Buffer[] {
    let out = this.frames;
    let excess = this.bytes - bytes;
    while (excess > 0 && out.length > 0) {
      if (out[0].length <= excess) { excess -= out[0].length; out = out.slice(1); } else { out = [out[0].subarray(excess), ...out.slice(1)]; excess = 0; }
    }
    this.clear();
    return out;
  }

  clear(): void { this.frames = []; this.bytes = 0; this.dropped = 0; }
  get size(): number { return this.bytes; }
}
