// Talk to (local) Kinesis with the AWS SDK, for tests and the demo.
//   node kinesis.js <endpoint> create <stream> <shards>
//   node kinesis.js <endpoint> read <stream> [after] -> one JSON line per record:
//        {"shard": "...", "seq": "...", "key": "...", "data": <the record's JSON>}
//   after: JSON {"<shard id>": "<sequence number>"}: only records after those
//   A KPL aggregated record (ticket_ext.kinesis_aggregate) is read with
//   awslabs' de-aggregator, checksums on: one line per user record, with
//   "sub": its index in the record and "agg": its number of user records.
'use strict';
const { KinesisClient, CreateStreamCommand, DescribeStreamCommand, ListShardsCommand,
        GetShardIteratorCommand, GetRecordsCommand } = require('@aws-sdk/client-kinesis');
const { NodeHttpHandler } = require('@smithy/node-http-handler');
const agg = require('aws-kinesis-agg');

const KPL_MAGIC = 'f3899ac2';

// A record's user records: [{data: Buffer, key, sub, n}] (one if not aggregated)
function userRecords(rec) {
  const buf = Buffer.from(rec.Data);
  if (buf.slice(0, 4).toString('hex') !== KPL_MAGIC)
    return [{ data: buf, key: rec.PartitionKey, sub: null, n: null }];
  let out;
  agg.deaggregateSync({ data: buf.toString('base64'), partitionKey: rec.PartitionKey,
    sequenceNumber: rec.SequenceNumber, kinesisSchemaVersion: '1.0' }, true, (err, users) => {
    if (err) throw new Error('de-aggregation failed: ' + err);
    out = users.map((u, i) => ({ data: Buffer.from(u.data, 'base64'), key: u.partitionKey, sub: i, n: users.length }));
  });
  return out;
}

const [endpoint, cmd, stream, arg] = process.argv.slice(2);
const client = new KinesisClient({
  endpoint, region: 'us-east-1',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  requestHandler: new NodeHttpHandler(),   // kinesalite speaks HTTP/1.1 only
});

async function create() {
  await client.send(new CreateStreamCommand({ StreamName: stream, ShardCount: parseInt(arg || '2', 10) }));
  for (let i = 0; i < 100; i++) {
    const d = await client.send(new DescribeStreamCommand({ StreamName: stream }));
    if (d.StreamDescription.StreamStatus === 'ACTIVE') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('stream did not become ACTIVE');
}

const after = cmd === 'read' && arg ? JSON.parse(arg) : {};

async function read() {
  const shards = (await client.send(new ListShardsCommand({ StreamName: stream }))).Shards;
  for (const s of shards) {
    const from = after[s.ShardId]
      ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: after[s.ShardId] }
      : { ShardIteratorType: 'TRIM_HORIZON' };
    let it = (await client.send(new GetShardIteratorCommand({
      StreamName: stream, ShardId: s.ShardId, ...from }))).ShardIterator;
    for (;;) {
      const r = await client.send(new GetRecordsCommand({ ShardIterator: it, Limit: 10000 }));
      for (const rec of r.Records) {
        for (const u of userRecords(rec)) {
          const line = { shard: s.ShardId, seq: rec.SequenceNumber, key: u.key,
            data: JSON.parse(u.data.toString('utf8')) };
          if (u.sub !== null) { line.sub = u.sub; line.agg = u.n; }
          process.stdout.write(JSON.stringify(line) + '\n');
        }
      }
      if (r.Records.length === 0 || !r.NextShardIterator || r.MillisBehindLatest === 0) {
        if (r.Records.length === 0) break;
      }
      it = r.NextShardIterator;
      if (!it) break;
    }
  }
}

(cmd === 'create' ? create() : read()).catch((e) => { console.error(String(e)); process.exit(1); });
