// kinesalite's own ceiling, without PostgreSQL: PutRecords calls of <per>
// records, <conc> calls in flight, for <secs> seconds; prints records/s.
//   node bench/kinesalite_ceiling.js <port> <per> <conc> [secs]
'use strict';
const http = require('http');
const [port, per, conc] = process.argv.slice(2, 5).map((x) => parseInt(x, 10));
const secs = parseInt(process.argv[5] || '5', 10);
const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
const stream = `ceiling${per}x${conc}`;

function call(op, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent,
      headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': `Kinesis_20131202.${op}`,
        Authorization: 'AWS4-HMAC-SHA256 Credential=a/20150101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=x',
        'X-Amz-Date': '20150101T000000Z' } }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve([res.statusCode, b]));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

(async () => {
  await call('CreateStream', { StreamName: stream, ShardCount: 4 });
  await new Promise((r) => setTimeout(r, 500));
  // an event of the size the worker sends
  const data = Buffer.from(JSON.stringify({ event_id: '23456789-0', type: 'reserved', item_id: 1,
    hold_id: 123456, qty: 1, holder: 'bench', commit_time: '2026-11-25T12:00:00.000000Z',
    lsn: '0/165A3F8', xid: 745 })).toString('base64');
  let n = 0;
  const end = Date.now() + secs * 1000;
  async function loop(k) {
    while (Date.now() < end) {
      const records = Array.from({ length: per }, () => ({ Data: data, PartitionKey: String(k) }));
      const [status, body] = await call('PutRecords', { StreamName: stream, Records: records });
      if (status !== 200) throw new Error(`HTTP ${status}: ${body}`);
      n += per;
    }
  }
  await Promise.all(Array.from({ length: conc }, (_, k) => loop(k)));
  console.log(`kinesalite alone: ${per} records per call, ${conc} in flight: ${(n / secs).toFixed(0)} records/s`);
  process.exit(0);
})().catch((e) => { console.error(String(e)); process.exit(1); });
