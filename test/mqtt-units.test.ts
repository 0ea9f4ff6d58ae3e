// The MQTT parts that need no daemon (issue 24): doctor's MQTT check and the
// link against a real Mosquitto broker (test/bench/mosquitto.ts) on a loopback
// port, with a client in Home Assistant's place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config.js';
import { checkMqtt } from '../src/doctor.js';

test('doctor (issue 24): an mqtt.ca_file that cannot be read is a failure naming the key and the file, not an exception out of doctor', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-mqtt-units-'));
  try {
    const ca = join(dir, 'no-such-ca.pem');
    const config = parseConfig({ mqtt: { url: 'mqtts://127.0.0.1:1', ca_file: ca } }, null, []);
    const c = await checkMqtt(config, null);
    assert.equal(c?.verdict, 'fail');
    assert.equal(c?.detail, `mqtt.ca_file: cannot read ${ca}: ENOENT`);
    assert.match(c?.fix ?? '', /mqtt\.ca_file/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
