// Check what a Kinesis stream holds for some items, as a consumer would read
// it (the lines of `node test/js/kinesis.js <endpoint> read <stream>`, on
// stdin): per item, events in (origin, event_id) order once repeats are
// dropped, and how many "reserved" events each item has.
//   node kinesis_check.js <first item> <last item>
// prints: items <n> reserved <n> repeats <n> out_of_order <n> records <n> user_records <n>
'use strict';
const readline = require('readline');
const [lo, hi] = process.argv.slice(2, 4).map((x) => parseInt(x, 10));
const last = {};
const seen = new Set();
const records = new Set();
let reserved = 0, repeats = 0, outOfOrder = 0, users = 0;
function key(d) {
  const [a, b] = d.event_id.split('-').map((x) => BigInt(x));
  return [BigInt(d.origin), a, b];
}
function less(x, y) {
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i];
  return false;
}
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const r = JSON.parse(line);
  const d = r.data;
  if (d.item_id == null || d.item_id < lo || d.item_id > hi || /^snapshot/.test(d.type)) return;
  users++;
  records.add(r.shard + ' ' + r.seq);
  const id = d.origin + ' ' + d.event_id;
  if (seen.has(id)) { repeats++; return; }
  seen.add(id);
  const k = key(d);
  if (last[d.item_id] && less(k, last[d.item_id])) outOfOrder++;
  else last[d.item_id] = k;
  if (d.type === 'reserved') reserved++;
}).on('close', () => {
  console.log(`items ${Object.keys(last).length} reserved ${reserved} repeats ${repeats} ` +
    `out_of_order ${outOfOrder} records ${records.size} user_records ${users}`);
});
