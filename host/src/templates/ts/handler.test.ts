import { test } from 'node:test';
import { given } from 'refract-sdk/testing';
import plugin from '../src/index.ts';

test('starts once', () => {
  given(plugin, []).when('Start', {}).thenEvents([{ type: 'Started', data: {} }]);
  given(plugin, [{ type: 'Started', data: {} }]).when('Start', {}).thenRejected('already_started');
});
