// A proxy in front of kinesalite that enforces Kinesis's per-shard write
// limits as AWS documents them (kinesalite enforces none): each shard takes
// at most <records/s> records and <bytes/s> bytes (data + partition key)
// per second.  A PutRecords record over its shard's limit fails alone, in
// an HTTP 200 answer, with ErrorCode ProvisionedThroughputExceededException
// and AWS's message; the others are stored.  The shard of a record is the
// one whose hash key range holds the MD5 of its partition key (read from
// kinesalite with ListShards).  Each shard is a token bucket holding at
// most one second of its limits, refilled continuously.
//   GET /stats -> {"<stream>/<shard>": {records, bytes, throttled}}
//   POST /fail-listshards (body: n) -> the next n ListShards calls get an
//   HTTP 500 InternalFailure; GET /listshards -> how many came
// usage: node shard_limit_proxy.js <listen-port> <kinesalite-port> [records/s] [bytes/s]
'use strict';
const http = require('http');
const crypto = require('crypto');
const { pass, reply, storeSome } = require('./proxy_http');

const [listenPort, targetPort] = process.argv.slice(2, 4).map((x) => parseInt(x, 10));
const RECORDS = parseInt(process.argv[4] || '1000', 10);
const BYTES = parseInt(process.argv[5] || String(1024 * 1024), 10);
const shardMaps = {};     // stream -> [{id, start: BigInt, end: BigInt}]
const buckets = {};       // "stream/shard" -> {records, bytes, at}
const stats = {};
let failListShards = 0;   // the next n ListShards calls fail (500)
let listShardsCalls = 0;

function call(target, headers, body, cb) {
  pass(targetPort, 'POST', '/', { ...headers, 'x-amz-target': target }, body, cb);
}

// the open shards of a stream (cached; a stream's shards do not change here)
function shardsOf(stream, headers, cb) {
  if (shardMaps[stream]) return cb(null, shardMaps[stream]);
  call('Kinesis_20131202.ListShards', headers, JSON.stringify({ StreamName: stream }), (code, body) => {
    if (code !== 200) return cb(new Error(body));
    shardMaps[stream] = JSON.parse(body).Shards
      .filter((s) => !s.SequenceNumberRange || !s.SequenceNumberRange.EndingSequenceNumber)
      .map((s) => ({ id: s.ShardId, start: BigInt(s.HashKeyRange.StartingHashKey),
        end: BigInt(s.HashKeyRange.EndingHashKey) }));
    cb(null, shardMaps[stream]);
  });
}

function shardFor(shards, key) {
  const h = BigInt('0x' + crypto.createHash('md5').update(key, 'utf8').digest('hex'));
  return shards.find((s) => h >= s.start && h <= s.end);
}

// take one record of n bytes from the shard's bucket, if it has room
function take(stream, shard, n) {
  const k = stream + '/' + shard;
  const now = process.hrtime.bigint();
  const b = buckets[k] || (buckets[k] = { records: RECORDS, bytes: BYTES, at: now });
  const secs = Number(now - b.at) / 1e9;
  b.records = Math.min(RECORDS, b.records + secs * RECORDS);
  b.bytes = Math.min(BYTES, b.bytes + secs * BYTES);
  b.at = now;
  const st = stats[k] || (stats[k] = { records: 0, bytes: 0, throttled: 0 });
  if (b.records < 1 || b.bytes < n) {
    st.throttled++;
    return false;
  }
  b.records -= 1;
  b.bytes -= n;
  st.records++;
  st.bytes += n;
  return true;
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString();
    if (req.url === '/stats') return reply(res, 200, JSON.stringify(stats));
    if (req.url === '/fail-listshards') { failListShards = parseInt(body, 10) || 0; return reply(res, 200, '{}'); }
    if (req.url === '/listshards') return reply(res, 200, JSON.stringify({ calls: listShardsCalls }));
    const target = req.headers['x-amz-target'];
    if (target === 'Kinesis_20131202.ListShards') {
      listShardsCalls++;
      if (failListShards > 0) {
        failListShards--;
        return reply(res, 500, JSON.stringify({ __type: 'InternalFailure', message: 'injected by the proxy' }));
      }
    }
    if (target !== 'Kinesis_20131202.PutRecords')
      return call(target, req.headers, body, (code, b) => reply(res, code, b));
    const request = JSON.parse(body);
    shardsOf(request.StreamName, req.headers, (err, shards) => {
      if (err) return call(target, req.headers, body, (code, b) => reply(res, code, b));
      const errors = request.Records.map((r) => {
        const shard = shardFor(shards, r.PartitionKey);
        const n = Buffer.from(r.Data, 'base64').length + Buffer.byteLength(r.PartitionKey);
        return shard && !take(request.StreamName, shard.id, n) ? {
          ErrorCode: 'ProvisionedThroughputExceededException',
          ErrorMessage: `Rate exceeded for shard ${shard.id} in stream ${request.StreamName} under account 000000000000.`,
        } : null;
      });
      storeSome(res, request, errors, (keepBody, cb) => call(target, req.headers, keepBody, cb));
    });
  });
}).listen(listenPort, '127.0.0.1');
