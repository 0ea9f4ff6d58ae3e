// The naive comparison client: the simplest Live API speaker, written the way
// the Gemini Live API "Get started" Node.js example (ai.google.dev) is:
//   - the mic streams from the start (that example uses the `mic` package,
//     i.e. arecord with default settings; here node-record-lpcm16's arecord
//     recorder, raw, default settings);
//   - onmessage pushes into responseQueue; a message loop moves audio parts
//     into audioQueue and, on `interrupted`, empties audioQueue
//     (`audioQueue.length = 0`) and nothing else: what was already written to
//     the speaker (its stream, the addon, the 0.5 s ALSA buffer) keeps playing;
//   - a playback loop shifts one chunk at a time into a `speaker` instance with
//     speaker.write() and awaits its callback.
// Two styles:
//   --style official  as the example: both loops poll with setImmediate (a busy
//                     loop), and the Speaker is ended whenever audioQueue is
//                     empty and re-created when audio comes again.
//   --style interval  both loops poll with a setTimeout of --poll-ms (default
//                     20) and one long-lived Speaker is kept open.
// Prints JSON lines: {ready, arecordPid} once the session is up and the mic runs.
// usage: node naive-client.js --url http://127.0.0.1:PORT [--style official|interval] [--poll-ms 20]
import { createRequire } from 'node:module';
import { GoogleGenAI, Modality, type LiveServerMessage } from '@google/genai';
import recorder from 'node-record-lpcm16';
import type SpeakerType from 'speaker';

const require = createRequire(import.meta.url);
const Speaker = require('speaker') as typeof SpeakerType;

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const url = arg('url', 'http://127.0.0.1:8765');
const style = arg('style', 'official');
const pollMs = Number(arg('poll-ms', '20'));
const pause = style === 'official'
  ? () => new Promise<void>((r) => setImmediate(r))
  : () => new Promise<void>((r) => setTimeout(r, pollMs));

const ai = new GoogleGenAI({ apiKey: 'naive-bench', httpOptions: { baseUrl: url } });

async function live(): Promise<void> {
  const responseQueue: LiveServerMessage[] = [];
  const audioQueue: Buffer[] = [];
  let speaker: SpeakerType | null = null;

  async function waitMessage(): Promise<LiveServerMessage> {
    while (responseQueue.length === 0) await pause();
    return responseQueue.shift()!;
  }

  function createSpeaker(): void {
    if (speaker) speaker.end();
    speaker = new Speaker({ channels: 1, bitDepth: 16, sampleRate: 24000 });
    speaker.on('error', (err: Error) => console.error('Speaker error:', err));
  }

  async function messageLoop(): Promise<void> {
    for (;;) {
      const message = await waitMessage();
      if (message.serverContent?.interrupted) {
        audioQueue.length = 0; // what the example does on interruption
        continue;
      }
      for (const part of message.serverContent?.modelTurn?.parts ?? []) {
        if (part.inlineData?.data) audioQueue.push(Buffer.from(part.inlineData.data, 'base64'));
      }
    }
  }

  async function playbackLoop(): Promise<void> {
    for (;;) {
      if (audioQueue.length === 0) {
        if (speaker && style === 'official') {
          speaker.end();
          speaker = null;
        }
        await pause();
      } else {
        if (!speaker) createSpeaker();
        const chunk = audioQueue.shift()!;
        await new Promise<void>((resolve) => { speaker!.write(chunk, () => resolve()); });
      }
    }
  }

  void messageLoop();
  void playbackLoop();

  const session = await ai.live.connect({
    model: 'gemini-2.5-flash-native-audio-preview-09-2025',
    config: { responseModalities: [Modality.AUDIO], systemInstruction: 'You are a helpful and friendly AI assistant.' },
    callbacks: {
      onmessage: (message: LiveServerMessage) => responseQueue.push(message),
      onerror: (e: { message?: string }) => console.error('Error:', e.message),
      onclose: (e: { reason?: string }) => { console.error('Closed:', e.reason); process.exit(0); },
    },
  });

  const rec = recorder.record({ sampleRate: 16000, channels: 1, recorder: 'arecord', audioType: 'raw' });
  rec.stream().on('data', (data: Buffer) => {
    session.sendRealtimeInput({ audio: { data: data.toString('base64'), mimeType: 'audio/pcm;rate=16000' } });
  });
  rec.stream().on('error', (err: unknown) => console.error('Microphone error:', err));
  process.stdout.write(JSON.stringify({ ready: Date.now(), arecordPid: rec.process.pid }) + '\n');
  process.on('SIGTERM', () => { rec.stop(); process.exit(0); });
}

live().catch((e) => { console.error(e); process.exit(1); });
