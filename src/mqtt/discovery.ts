// Home Assistant MQTT discovery for this speaker (issue 24): one device, its
// entities, and the topics they read and write. Pure: the payloads are built
// here and published by src/mqtt/link.ts.
//
// Checked against the Home Assistant docs (home-assistant.io, 2026-12):
// integrations/mqtt ("MQTT Discovery": topic <prefix>/<component>/[<node_id>/]<object_id>/config,
// retained config, an empty retained payload removes the entity, the device
// block: identifiers, name, manufacturer, model, sw_version; origin: name,
// sw_version; availability: topic, payload_available, payload_not_available;
// unique_id; default_entity_id, which replaced object_id in 2025.10), and
// the platforms used: sensor.mqtt (device_class enum with options, timestamp),
// switch.mqtt (payload_on/off), number.mqtt (min, max, step, mode), button.mqtt
// (payload_press), notify.mqtt (command_topic; the message is the payload,
// the title is not sent), event.mqtt (event_types; the state topic carries
// JSON with event_type). Full key names are used (the abbreviations and `~`
// are optional).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { State } from '../ports.js';
import { MAX_VOLUME } from '../state.js';

export const STATES: readonly State[] = ['idle', 'connecting', 'listening', 'thinking', 'speaking', 'follow-up', 'muted', 'error'];
export const EVENT_TYPES = ['started', 'ended', 'interrupted', 'tool_called'] as const;
export type ConversationEvent = (typeof EVENT_TYPES)[number];
export const COMMANDS = ['announce', 'ask', 'press', 'mute', 'volume', 'stop'] as const;
export type CommandName = (typeof COMMANDS)[number];

/** Who this speaker is, for the device block. */
export interface Identity { hostname: string; uniqueId: string; model: string; swVersion: string }

/** The Pi's identity: its hostname, an id derived from /etc/machine-id (hashed: the raw id is not published), the board's model. */
export function readIdentity(swVersion: string, files = { machineId: '/etc/machine-id', model: '/proc/device-tree/model' }): Identity {
  const host = hostname();
  let machine = '';
  try { machine = readFileSync(files.machineId, 'utf8').trim(); } catch { /* none: the hostname stands in */ }
  const hash = createHash('sha256').update(`live-speaker:${machine || host}`).digest('hex').slice(0, 12);
  let model = 'Linux computer';
  try { model = readFileSync(files.model, 'utf8').replace(/\0/g, '').trim() || model; } catch { /* not a Pi (no device tree) */ }
  return { hostname: host, uniqueId: `live_speaker_${hash}`, model, swVersion };
}

/** A topic level from the hostname: what MQTT and HA ids allow. */
export const topicSafe = (s: string) => s.toLowerCase().replace(/[^a-z0-9_-]+/g, '_').replace(/^_+|_+$/g, '') || 'speaker';

export interface Topics {
  base: string;
  availability: string;
  state: string;
  mute: string;
  volume: string;
  nextTimer: string;
  lastError: string;
  event: string;
  /** Each announcement's or question's outcome (JSON, not retained). */
  result: string;
  command: (c: CommandName) => string;
  /** Home Assistant's birth / last will. */
  haStatus: string;
}

export function topics(base: string, prefix: string): Topics {
  return {
    base,
    availability: `${base}/availability`,
    state: `${base}/state`,
    mute: `${base}/mute`,
    volume: `${base}/volume`,
    nextTimer: `${base}/next_timer`,
    lastError: `${base}/last_error`,
    event: `${base}/event`,
    result: `${base}/result`,
    command: (c) => `${base}/cmd/${c}`,
    haStatus: `${prefix}/status`,
  };
}

export interface DiscoveryConfig { topic: string; component: string; objectId: string; payload: Record<string, unknown> }

/** Every entity's retained config message. */
export function discoveryConfigs(id: Identity, t: Topics, prefix: string): DiscoveryConfig[] {
  const device = { identifiers: [id.uniqueId], name: id.hostname, manufacturer: 'live-speaker', model: id.model, sw_version: id.swVersion };
  const origin = { name: 'live-speaker', sw_version: id.swVersion };
  const entity = (component: string, objectId: string, name: string, extra: Record<string, unknown>): DiscoveryConfig => ({
    topic: `${prefix}/${component}/${id.uniqueId}/${objectId}/config`,
    component,
    objectId,
    payload: {
      name,
      unique_id: `${id.uniqueId}_${objectId}`,
      default_entity_id: `${component}.${topicSafe(id.hostname)}_${objectId}`,
      availability: [{ topic: t.availability, payload_available: 'online', payload_not_available: 'offline' }],
      device,
      origin,
      ...extra,
    },
  });
  return [
    entity('sensor', 'state', 'State', { state_topic: t.state, device_class: 'enum', options: [...STATES], icon: 'mdi:account-voice' }),
    entity('switch', 'mute', 'Mute', { state_topic: t.mute, command_topic: t.command('mute'), payload_on: 'ON', payload_off: 'OFF', icon: 'mdi:microphone-off' }),
    entity('number', 'volume', 'Volume', { state_topic: t.volume, command_topic: t.command('volume'), min: 0, max: MAX_VOLUME, step: 1, mode: 'slider', unit_of_measurement: '%', icon: 'mdi:volume-high' }),
    entity('button', 'press', 'Talk', { command_topic: t.command('press'), payload_press: 'PRESS', icon: 'mdi:gesture-tap-button' }),
    entity('button', 'stop', 'Stop', { command_topic: t.command('stop'), payload_press: 'PRESS', icon: 'mdi:stop' }),
    entity('notify', 'announce', 'Announce', { command_topic: t.command('announce') }),
    entity('notify', 'ask', 'Ask', { command_topic: t.command('ask') }),
    entity('sensor', 'next_timer', 'Next timer', { state_topic: t.nextTimer, device_class: 'timestamp', icon: 'mdi:timer-outline' }),
    entity('sensor', 'last_error', 'Last error', { state_topic: t.lastError, entity_category: 'diagnostic', icon: 'mdi:alert-circle-outline' }),
    entity('event', 'conversation', 'Conversation', { state_topic: t.event, event_types: [...EVENT_TYPES], icon: 'mdi:chat-processing' }),
  ];
}
