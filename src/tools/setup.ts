// The tools as the daemon wires them: the dispatcher (declared in each
// session, run on each toolCall), the timers with their ringer (sound and
// LEDs), and the volume shared with `ctl volume`. daemon.ts calls this once.
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { ConversationHandle, State } from '../ports.js';
import { MAX_VOLUME, type StateStore } from '../state.js';
import { Timers, type Ringer, type TimerEntry } from '../timers.js';
import { alarmSound } from '../audio/sounds.js';
import { ToolDispatcher } from './registry.js';
import type { ToolServices } from './types.js';

/** The player as the ringer uses it (SpeakerPlayer). */
interface RingPlayer { play(pcm: Buffer): void; finish(onDrained: () => void): void; flush(): void; volume: number }
interface RingLeds { timerRinging?(on: boolean): void }

/** Loudness of the ringing sound (fraction of full scale) before the volume: louder than the chimes, under the limiter. */
const ALARM_LEVEL = 0.5;

/**
 * Rings with the generated sound through the player, cycle after cycle (each
 * queued when the last one has been heard), and shows it on the LEDs. The
 * sound waits while a conversation holds the speaker (the LEDs show at once)
 * and starts when it is over.
 */
export class SoundRinger implements Ringer {
  private on = false;
  private once = false;
  private playing = false;
  private gen = 0;
  onOnceDone: () => void = () => undefined;

  constructor(private readonly player: RingPlayer, private readonly leds: RingLeds, private readonly idle: () => boolean, private readonly sound: Buffer, private readonly log: Logger) {}

  start(_entries: TimerEntry[], opts: { once: boolean }): void {
    this.once = opts.once;
    if (this.on) return;
    this.on = true;
    this.leds.timerRinging?.(true);
    if (this.idle()) this.cycle(); else this.log.info('a timer rings during a conversation: the LEDs show it now, the sound follows when the conversation ends');
  }

  /** The conversation is over: a ringing that waited starts its sound. */
  idleNow(): void { if (this.on && !this.playing) this.cycle(); }

  stop(): void {
    if (!this.on) return;
    this.on = false;
    this.gen++;
    if (this.playing) this.player.flush();
    this.playing = false;
    this.leds.timerRinging?.(false);
  }

  private cycle(): void {
    const gen = this.gen;
    this.playing = true;
    this.player.play(this.sound);
    this.player.finish(() => {
      if (gen !== this.gen || !this.on) return;
      if (this.once) { this.playing = false; this.stop(); this.onOnceDone(); return; }
      this.cycle();
    });
  }
}

export interface ToolsSetup {
  dispatcher: ToolDispatcher;
  timers: Timers;
  /** Wire to the conversation (press hook, idle) and load the saved timers (a missed one rings once now). */
  start(conversation: ConversationHandle): void;
  stop(): void;
}

export function setupTools(o: { config: () => Config; stateDir: string; player: RingPlayer; leds: RingLeds; store: StateStore; log: Logger; conversation: () => ConversationHandle }): ToolsSetup {
  const { log } = o;
  const ringer = new SoundRinger(o.player, o.leds, () => { const s = o.conversation().state; return s === 'idle' || s === 'error' || s === 'muted'; }, alarmSound(24000, ALARM_LEVEL), log);
  const timers = new Timers({ dir: o.stateDir, get ringMaxMs() { return o.config().tools.timer_ring_max_s * 1000; }, logLabels: () => o.config().log.transcripts }, ringer, log); // a reload's value from the next ringing on
  ringer.onOnceDone = () => timers.rangOnce();
  const services: ToolServices = {
    volume: {
      max: MAX_VOLUME,
      get: () => o.player.volume,
      set: (v) => { o.player.volume = v; o.store.set({ volume: v }); log.info({ volume: v, by: 'set_volume' }, 'volume'); },
    },
    timers,
    endConversation: () => o.conversation().endAfterReply(),
    log,
  };
  const dispatcher = new ToolDispatcher(services, o.config().tools.commands, log, () => o.config().log.transcripts, o.config().tools.max_concurrent_commands);
  return {
    dispatcher,
    timers,
    start(conversation) {
      // A press or the wake word while a timer rings stops it (and does nothing else).
      conversation.pressHook = (trigger) => timers.stopRinging(trigger);
      conversation.on('state', (to: State) => { if (to === 'idle' || to === 'muted') ringer.idleNow(); });
      timers.start();
    },
    stop() { timers.stop(); dispatcher.cancelAll(); },
  };
}
