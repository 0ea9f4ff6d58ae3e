// Reply playback through the `speaker` addon (ALSA): one stream per
// conversation, every sample counted.
//
// The device is opened when a conversation starts and closed when it ends
// (in idle, other programs may play). While open it is never left to run
// dry: between replies it is fed silence, so the stream never restarts and
// the timeline (./timeline.ts) that says when each written sample leaves the
// speaker holds for the whole conversation. Why: a stream that starts, or
// runs dry and restarts, loses its first milliseconds (the ALSA pulse plugin
// reconnects the stream on an underrun; seen here: 4-18 ms of every reply's
// head, and more on every underrun), and closing it by a wall-clock guess
// cut the tail. Now every (re)start of the device begins with a pad of
// silence, and a device is only closed once the timeline says its last
// audible sample has been heard, so it drops nothing but silence.
//
// The queue of audio not yet written lives here, not in the addon, and only
// `leadMs` of it is ever in the device. A barge-in drops our queue and what
// is in the device (the addon's native flush: snd_pcm_drop + snd_pcm_prepare,
// without closing), so the speaker is silent at once and the stream goes on.
import { EventEmitter } from 'node:events';
import type { Player } from '../ports.js';
import type SpeakerType from 'speaker';
import type { Logger } from '../log.js';
import { monotonicMs } from '../clock.js';
import { PlaybackTimeline } from './timeline.js';
import { Limiter } from './volume.js';
import { explainOpenFailure } from './devices.js';
import { addon, loadSpeakerAddon } from './addon.js';
/** Audio written per top-up while idle, and the feeder's tick. */
const TICK_MS = 10;
/**
 * Silence kept in the device between replies: what a reply's first sample
 * waits behind. A sound server pulls audio from the stream ahead of time; a
 * queue shorter than that runs dry there without an error, and every sample
 * is then heard later than counted (seen here: with 60 ms queued, 60 ms
 * later; with 120 ms, 9-17 ms, a constant per run). The `speaker` addon asks
 * ALSA for 125 ms periods, and the server takes a stream's audio a period at
 * a time: the lead swept 40-120 ms, docs/performance.md.
 */
const IDLE_LEAD_MS = 120;
/** Silence written first whenever the device (re)starts: a starting stream may lose its first milliseconds. */
const PAD_MS = 40;
/**
 * For this long after the device (re)starts, it is never filled past the idle
 * lead: a sound server renders ahead what a starting stream holds past about
 * that, and every later sample of the stream is then heard earlier than
 * counted. Seen here (simulated card, first drop 1.1 s into a stream): opened
 * with 200 ms written at once, or 120 ms and then audio at once, the stream
 * ran 10-54 ms ahead of the count for its whole life (the echo reference with
 * it); opened with 120 ms and audio 50 ms later or more, -13 to +6 ms, like a
 * stream restarted after a drop.
 *
 * Not so once the device ran dry (the count went below zero; Device.ranDry):
 * the thread or the machine is busy (a cold first conversation blocks this
 * thread in bursts as the session connects: 65, 53, 36 and 34 ms after a press
 * here, unloaded; far more on a busy machine). The restart then gets the idle lead of silence,
 * not PAD_MS, and a reply the whole lead at once: losing nothing comes before
 * timing. With the idle lead alone, with three CPU hogs on two cores, a first
 * reply's 200 ms head ran dry again and lost 60-200 ms of it in 3 runs of 16;
 * with this, in 0 of 10. A write that merely came back late (SLOW_WRITE_MS) is
 * not taken as the sign: in the Debian 13 test root a first write comes back
 * after 88-98 ms with nothing else running. (There, about 1 run in 10 still
 * loses part of a first reply's head with nothing logged, with or without
 * this rule: not understood yet.)
 */
const START_SETTLE_MS = 100;
/**
 * Audio is only written behind at least this much counted queue; else a pad
 * of silence goes first. A sound server takes some of the queue ahead of
 * time (seen here: 25-30 ms), so a device whose count is low may already have
 * run dry and restart with the next write, losing its first milliseconds.
 */
const GUARD_MS = 50;
/** A write normally returns at once (the device is never more than leadMs full); this long means it stopped. */
const STALL_MS = 1500;
/**
 * When the device is behind the count, it is counted again from zero: its
 * silence is dropped once it holds nothing else. It may be behind when the
 * daemon was late by RESYNC_MS with the queue settled (the sound server may
 * have run short without a word, see IDLE_LEAD_MS), or when a write took
 * SLOW_WRITE_MS (held back by a full device that stopped taking audio for a
 * while: up to its whole 0.5 s buffer more than counted). Audio may then
 * still be playing for DESYNC_MS past the timeline's end of it, so the drop
 * waits that long (a barge-in drops it, and the device is not closed, before).
 */
const RESYNC_MS = 40;
const SLOW_WRITE_MS = 80;
const DESYNC_MS = 600;
/** After the last audible sample is heard (by the timeline), the device is kept this long before it is closed: a margin for a device slower than calibrated (only silence is dropped). */
const CLOSE_AFTER_MS = 500;
/** Back-off between attempts to open a device that failed; after GIVE_UP_AFTER failures in a row the reply is dropped. */
const OPEN_RETRY_MS = [250, 500, 1000, 2000];
const GIVE_UP_AFTER = 4;
/**
 * At most this much reply audio waits in the queue (28.8 MB at 24 kHz): the
 * server sends faster than real time, and no server, however broken, may
 * make the daemon hold more. The longest conversation (max_conversation_s,
 * 600 s by default) fits; audio past it is dropped, said once per reply.
 */
export const QUEUE_MAX_S = 600;

export interface PlaybackOptions {
  device: string;
  rate: number;
  /** Audio kept queued in the device while a reply plays: the daemon may be late by this much without a gap. */
  leadMs: number;
  /** What follows the ALSA queue before a sample is heard (sound server, DAC): calibrated, see config.yaml. */
  outputLatencyMs: number;
}

/** One opened device. Each has its own identity: a late callback from an abandoned one never touches the current one. */
class Device {
  private static count = 0;
  readonly id = ++Device.count;
  state: 'open' | 'abandoned' | 'failed' | 'closed' = 'open';
  inflight = false;
  since = 0; // when the write in flight was started
  ranDry = false; // by the count, at least once: from then on a restart gets the idle lead, a reply the whole lead (START_SETTLE_MS)
  constructor(readonly spk: SpeakerType, readonly name: string) {}
  get handle(): object | null { return (this.spk as unknown as { audio_handle: object | null }).audio_handle ?? null; }
}

export interface PlayerStatus {
  device: string; open: boolean; volume: number;
  /** The device's delay for a sample written now (counted queue + output latency), ms. */
  delayMs: number | null;
  samplesWritten: number; underruns: number; stalls: number; openFailures: number;
  /** The last stretch of audible audio by the timeline: when its first and last samples are (were) heard, wall-clock ms. */
  lastAudible: { firstHeardAt: number; lastHeardAt: number } | null;
}

export class SpeakerPlayer extends EventEmitter implements Player {
  /** When each written sample leaves the speaker, and the played reference (event 'played'). */
  readonly timeline: PlaybackTimeline;
  private held = false; // a conversation is on: keep the device open
  private device: Device | null = null;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private readonly limiter: Limiter;
  private drain: (() => void) | null = null; // finish() waiting for the last audible sample to be heard
  private audibleEndSample = 0; // samples written up to the end of the last audible chunk
  private audibleUntil = 0; // when that is heard (monotonic ms)
  private audibleFrom: number | null = null; // when the first sample of the current audible stretch is heard
  private dropPending = false;
  private behind = false; // the device may be behind the count: recount at the next quiet moment (see RESYNC_MS)
  private settled = false; // the queue has reached the idle lead since the device (re)started
  private ticker: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private nextOpenAt = 0;
  private openFailures = 0;
  private failing = false; // the device cannot be opened: audio is dropped (and said once per turn) until it can
  private failureReported = false;
  private overflowReported = false;
  private underruns = 0;
  private stalls = 0;
  private stallStreak = 0; // stalls in a row, for the back-off before the next device

  constructor(private opts: PlaybackOptions, volumePercent = 100, private readonly log: Logger | null = null) {
    super();
    this.timeline = new PlaybackTimeline(opts.rate, opts.outputLatencyMs);
    this.limiter = new Limiter(volumePercent, opts.rate);
  }

  /** New device, lead or latency (config reload): the device from the next conversation on, the rest at once. */
  configure(opts: PlaybackOptions): void {
    this.opts = opts;
    this.timeline.outputLatencyMs = opts.outputLatencyMs;
  }

  get volume(): number { return this.limiter.percent; }
  set volume(percent: number) { this.limiter.percent = percent; }

  status(): PlayerStatus {
    const now = monotonicMs();
    return {
      device: this.opts.device, open: this.device !== null, volume: this.volume,
      delayMs: this.device && this.timeline.anchored ? Math.round(this.timeline.delayMs(now)) : null,
      samplesWritten: this.timeline.samplesWritten, underruns: this.underruns, stalls: this.stalls, openFailures: this.openFailures,
      lastAudible: this.audibleFrom === null ? null : { firstHeardAt: Math.round(Date.now() - (now - this.audibleFrom)), lastHeardAt: Math.round(Date.now() - (now - this.audibleUntil)) },
    };
  }

  // ---- the Player port --------------------------------------------------------

  open(): void {
    this.held = true;
    if (this.failing) { this.failing = false; this.openFailures = 0; this.nextOpenAt = 0; } // a new conversation tries afresh
    this.pump();
  }

  close(): void { this.held = false; this.pump(); }

  play(pcm: Buffer): void {
    if (pcm.length < 2) return;
    if (this.failing) { this.reportFailure(`cannot play on ALSA device '${this.opts.device}': it could not be opened (retrying)`); return; }
    const even = pcm.length & 1 ? pcm.subarray(0, pcm.length - 1) : pcm;
    if (this.queuedBytes + even.length > this.opts.rate * 2 * QUEUE_MAX_S) {
      if (!this.overflowReported) this.log?.warn({ queuedS: Math.round(this.queuedBytes / (this.opts.rate * 2)) }, `reply audio dropped: more than ${QUEUE_MAX_S} s already waits to be played`);
      this.overflowReported = true;
      return;
    }
    this.queue.push(even);
    this.queuedBytes += even.length;
    this.pump();
  }

  finish(onDrained: () => void): void {
    this.drain = onDrained;
    this.failureReported = false;
    this.overflowReported = false;
    this.pump();
  }

  flush(): void {
    this.queue = [];
    this.queuedBytes = 0;
    this.drain = null;
    this.failureReported = false;
    this.overflowReported = false;
    this.limiter.reset();
    const dev = this.device;
    const now = monotonicMs();
    // Only audible audio is worth a drop; silence in the device may play out (the stream stays continuous).
    if (dev && dev.handle && this.audibleUntil + this.slackMs() > now) {
      if (dev.inflight) this.dropPending = true; else this.drop(dev, now);
    }
    this.pump();
  }

  // ---- the feeder ---------------------------------------------------------------

  private pump(): void {
    const now = monotonicMs();
    this.timeline.advance(now);
    if (this.drain && this.queuedBytes === 0 && (!this.timeline.anchored || this.audibleUntil <= now)) {
      // Everything of this turn has been heard (by the timeline): that is when the reply is finished.
      const done = this.drain;
      this.drain = null;
      done();
    }
    const dev = this.device;
    if (dev?.inflight) {
      if (now - dev.since > STALL_MS) this.stalled(dev, now);
      return;
    }
    if (!this.wanted(now)) { if (dev) this.closeDevice(dev, now); return; }
    if (!dev) { this.openDevice(now); return; }
    let queued = this.timeline.queuedMs(now);
    const idleLead = Math.min(IDLE_LEAD_MS, this.opts.leadMs);
    if (this.timeline.anchored && queued >= idleLead - TICK_MS) this.settled = true;
    if (this.settled && queued < idleLead - RESYNC_MS && !this.behind) {
      this.behind = true;
      this.log?.debug({ lateMs: Math.round(idleLead - queued) }, 'the daemon was late: the device may be behind the count; recounting once it holds only silence');
    }
    if (this.dropPending) { this.drop(dev, now); queued = 0; }
    else if (this.behind && this.queuedBytes === 0 && this.drain === null && now >= this.audibleUntil + DESYNC_MS) {
      this.drop(dev, now);
      queued = 0;
    }
    if (this.timeline.anchored && queued < 0) {
      // The daemon was late by more than the queue: the device ran dry and restarts at the next write.
      this.underruns++;
      this.log?.debug({ lateMs: Math.round(-queued) }, 'playback ran dry (the daemon was late); restarting the stream with a pad of silence');
      const behind = this.behind; // by the count; a device behind it may still be playing
      dev.ranDry = true;
      this.cut(now);
      this.behind = behind;
      queued = 0;
    }
    if (!this.timeline.anchored) { this.write(dev, Buffer.alloc(this.bytes(dev.ranDry ? idleLead : PAD_MS)), false); return; }
    const audio = this.queuedBytes > 0;
    if (audio && queued < GUARD_MS) { this.write(dev, Buffer.alloc(this.bytes(Math.max(PAD_MS, GUARD_MS - queued))), false); return; }
    const target = audio && (dev.ranDry || now >= this.timeline.startedAtMs + START_SETTLE_MS) ? this.opts.leadMs : idleLead;
    if (queued > target - TICK_MS / 2) return;
    const want = this.bytes(target - queued);
    if (audio) this.write(dev, this.take(want), true);
    else this.write(dev, Buffer.alloc(want), false);
  }

  /** The device is needed: a conversation holds it, audio waits, or the last audible sample is not heard yet. */
  private wanted(now: number): boolean {
    return this.held || this.queuedBytes > 0 || this.drain !== null || (this.device !== null && now < this.audibleUntil + this.slackMs() + CLOSE_AFTER_MS);
  }

  /** How long audio may still play past the timeline's end of it. */
  private slackMs(): number {
    return this.behind ? DESYNC_MS : 0;
  }

  private bytes(ms: number): number {
    const tick = (this.opts.rate * TICK_MS) / 1000;
    return Math.max(1, Math.ceil((ms * this.opts.rate) / 1000 / tick)) * tick * 2;
  }

  /** Up to `want` bytes of queued audio, through volume and limiter; all of it (limiter tail included) when the queue empties. */
  private take(want: number): Buffer {
    const parts: Buffer[] = [];
    let got = 0;
    while (this.queue.length > 0 && got < want) {
      const q = this.queue[0];
      const n = Math.min(q.length, want - got);
      parts.push(q.subarray(0, n));
      got += n;
      if (n === q.length) this.queue.shift(); else this.queue[0] = q.subarray(n);
    }
    this.queuedBytes -= got;
    const out = [this.limiter.process(parts.length === 1 ? parts[0] : Buffer.concat(parts))];
    if (this.queuedBytes === 0) out.push(this.limiter.drain());
    return Buffer.concat(out);
  }

  private write(dev: Device, pcm: Buffer, audible: boolean): void {
    if (pcm.length === 0) return;
    dev.inflight = true;
    dev.spk.write(pcm, (err?: Error | null) => this.writeDone(dev, err ?? null));
    // Timed after the call: a device's first write opens it first (synchronously, tens of ms on a
    // sound server), and the device starts when the samples reach it, so an anchor is taken then.
    dev.since = monotonicMs();
    const startsAt = this.timeline.wrote(pcm, dev.since);
    if (audible) {
      // A new stretch of audio when the last one is not still in the device right before this one.
      if (this.audibleEndSample !== this.timeline.samplesWritten - (pcm.length >> 1) || this.audibleUntil < dev.since) this.audibleFrom = startsAt;
      this.audibleEndSample = this.timeline.samplesWritten;
      this.audibleUntil = this.timeline.atMs(this.audibleEndSample);
    }
  }

  private writeDone(dev: Device, err: Error | null): void {
    dev.inflight = false;
    if (dev !== this.device) {
      // Abandoned (stalled), replaced or closed while this write was in the addon: close it now, never touch the current one.
      if (dev.state === 'abandoned') this.log?.info({ device: dev.name, id: dev.id }, 'the stalled sound device answered at last; closed it');
      this.release(dev);
      return;
    }
    if (err) { this.failed(dev, err); return; }
    const now = monotonicMs();
    if (now - dev.since > SLOW_WRITE_MS && !this.behind) {
      this.behind = true; // held back by a full device: its queue is not what was counted
      this.log?.debug({ device: dev.name, writeMs: Math.round(now - dev.since) }, 'the device held back a write: it may be behind the count; recounting once it holds only silence');
    }
    if (this.openFailures > 0) {
      this.log?.info({ device: dev.name, failedAttempts: this.openFailures }, 'the sound device works again');
      this.openFailures = 0;
      this.failing = false;
    }
    this.pump();
  }

  // ---- device life ----------------------------------------------------------------

  private openDevice(now: number): void {
    if (now < this.nextOpenAt) { this.retryAt(this.nextOpenAt - now); return; }
    const loaded = addon();
    if (!loaded) {
      loadSpeakerAddon().then(() => this.pump(), (e: Error) => this.openFailed(null, e));
      return;
    }
    const spk = new loaded.Speaker({ channels: 1, bitDepth: 16, sampleRate: this.opts.rate, signed: true, device: this.opts.device, samplesPerFrame: (this.opts.rate * TICK_MS) / 1000 });
    const dev = new Device(spk, this.opts.device);
    spk.on('error', (e: Error) => { if (dev === this.device) this.failed(dev, e); });
    this.device = dev;
    this.cut(now);
    this.ticker ??= setInterval(() => this.pump(), TICK_MS);
    this.log?.debug({ device: dev.name, id: dev.id }, 'sound device opened');
    // Opens the device (in the addon's first write), with the whole idle lead of silence: what is written next
    // waits for this write to return, and the device is opened when a conversation starts, while the session
    // connects on this thread. With PAD_MS alone the first wake chime after the open lost a note, the loop stalled
    // 100-110 ms just then ("playback ran dry", 58-72 ms late; 2 runs in 14). Not more (see START_SETTLE_MS): a
    // reply comes long after the open, behind the idle lead as before; the chime starts the idle lead after the wake word.
    this.write(dev, Buffer.alloc(this.bytes(Math.max(PAD_MS, Math.min(IDLE_LEAD_MS, this.opts.leadMs)))), false);
  }

  /** A write failed: the device could not be opened (no handle), or it failed while playing. */
  private failed(dev: Device, e: Error): void {
    if (dev.state !== 'open') return;
    if (!dev.handle) { this.openFailed(dev, e); return; }
    dev.state = 'failed';
    this.device = null;
    if (!dev.inflight) this.release(dev);
    const now = monotonicMs();
    this.cut(now);
    this.audibleUntil = now;
    this.log?.warn({ device: dev.name, error: e.message }, 'the sound device failed while playing; opening it again');
    this.dropAudio(`cannot play on ALSA device '${dev.name}': ${e.message}`);
    this.nextOpenAt = now + OPEN_RETRY_MS[0];
    this.pump();
  }

  private openFailed(dev: Device | null, e: Error): void {
    if (dev) { dev.state = 'failed'; if (this.device === dev) this.device = null; this.release(dev); }
    const now = monotonicMs();
    this.cut(now);
    this.openFailures++;
    const why = explainOpenFailure(this.opts.device) ?? e.message;
    const delay = OPEN_RETRY_MS[Math.min(this.openFailures - 1, OPEN_RETRY_MS.length - 1)];
    this.nextOpenAt = now + delay;
    const message = `cannot play on ALSA device '${this.opts.device}': ${why}`;
    if (this.openFailures === 1) this.log?.warn({ device: this.opts.device, reason: why, retryInMs: delay }, 'cannot open the sound device; retrying');
    else this.log?.debug({ device: this.opts.device, reason: why, attempt: this.openFailures, retryInMs: delay }, 'still cannot open the sound device');
    if (this.openFailures === GIVE_UP_AFTER) {
      this.failing = true;
      this.dropAudio(`${message} (tried ${GIVE_UP_AFTER} times; retrying in the background; \`live-speaker doctor\` checks the device)`);
    }
    this.pump();
  }

  /** The addon's write did not come back: abandon that device (closing it mid-write can crash) and open a new one. */
  private stalled(dev: Device, now: number): void {
    this.stalls++;
    dev.state = 'abandoned';
    this.device = null;
    this.cut(now);
    this.audibleUntil = now;
    this.dropPending = false;
    this.log?.warn({ device: dev.name, id: dev.id, stalledMs: Math.round(now - dev.since) },
      'the sound device stopped taking audio; abandoned it (it is closed once its write returns) and opening a new one');
    this.dropAudio(`cannot play on ALSA device '${dev.name}': the device stopped taking audio (a write took over ${STALL_MS} ms)`);
    this.nextOpenAt = now + OPEN_RETRY_MS[Math.min(this.stallStreak++, OPEN_RETRY_MS.length - 1)];
    this.pump();
  }

  /** Audio that cannot be played is dropped, and the conversation told (once per turn). */
  private dropAudio(message: string): void {
    const had = this.queuedBytes > 0 || this.drain !== null;
    this.queue = [];
    this.queuedBytes = 0;
    this.drain = null;
    this.limiter.reset();
    if (had || this.failing) this.reportFailure(message);
  }

  private reportFailure(message: string): void {
    if (this.failureReported) return;
    this.failureReported = true;
    this.emit('error', new Error(message));
  }

  private drop(dev: Device, now: number): void {
    this.dropPending = false;
    const handle = dev.handle;
    const loaded = addon();
    if (handle && loaded) {
      try { loaded.binding.flush(handle); } catch (e) { this.failed(dev, e as Error); return; }
    }
    this.cut(now);
    this.audibleUntil = now;
  }

  private closeDevice(dev: Device, now: number): void {
    this.device = null;
    this.stallStreak = 0;
    this.dropPending = false;
    this.cut(now);
    if (this.ticker) { clearInterval(this.ticker); this.ticker = null; }
    if (!dev.inflight) this.release(dev); // else when its write returns
    this.log?.debug({ device: dev.name, id: dev.id }, 'sound device closed');
  }

  private release(dev: Device): void {
    if (dev.state === 'closed') return;
    dev.state = 'closed';
    try { dev.spk.close(true); } catch { /* already closed */ }
  }

  /** The device's queue is gone (dropped, ran dry, closed, replaced): the next write anchors the timeline again. */
  private cut(now: number): void {
    this.timeline.cut(now);
    this.settled = false;
    this.behind = false;
  }

  private retryAt(ms: number): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => { this.retryTimer = null; this.pump(); }, Math.max(1, Math.ceil(ms)));
  }
}
