// A fault-injecting proxy in front of kinesalite (which never throttles
// and never fails part of a batch).  For PutRecords calls, by call number:
//   every 10th: HTTP 400 ProvisionedThroughputExceededException (whole call)
//   every 13th: HTTP 500 InternalFailure
//   every 7th: HTTP 200 that answers for no record (no FailedRecordCount,
//              empty Records), nothing stored: a sink must not take it as success
//   every 5th: partial failure: records at odd positions fail with
//              ProvisionedThroughputExceededException, the rest are stored
// everything else is forwarded unchanged.
// A request whose X-Amz-Security-Token is "expired" is refused, in every
// mode, with HTTP 400 ExpiredTokenException (as AWS does for expired
// temporary credentials).
// With a third argument "slow:<ms>" it injects no faults and instead holds
// every call <ms> before forwarding it (a slow sink).
// usage: node fault_proxy.js <listen-port> <kinesalite-port> [slow:<ms>]
'use strict';
const http = require('http');
const { pass, reply, storeSome } = require('./proxy_http');
const [listenPort, targetPort] = process.argv.slice(2, 4).map((x) => parseInt(x, 10));
const slowMs = /^slow:(\d+)$/.test(process.argv[4] || '') ? parseInt(process.argv[4].slice(5), 10) : -1;
let calls = 0;
const stats = { expired: 0, forwarded: 0, throttled: 0, failed500: 0, incomplete: 0, partial: 0, failedRecords: 0 };

function forward(req, body, cb) {
  pass(targetPort, req.method, req.url, req.headers, body, cb);
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString();
    if (req.url === '/stats') return reply(res, 200, JSON.stringify(stats));
    if (req.headers['x-amz-security-token'] === 'expired') {
      stats.expired++;
      return reply(res, 400, JSON.stringify({ __type: 'ExpiredTokenException',
        message: 'The security token included in the request is expired' }));
    }
    if (slowMs >= 0) {
      stats.forwarded++;
      return setTimeout(() => forward(req, body, (code, b) => reply(res, code, b)), slowMs);
    }
    if (req.headers['x-amz-target'] !== 'Kinesis_20131202.PutRecords') {
      return forward(req, body, (code, b) => reply(res, code, b));
    }
    calls++;
    if (calls % 10 === 0) {
      stats.throttled++;
      return reply(res, 400, JSON.stringify({ __type: 'ProvisionedThroughputExceededException',
        message: 'Rate exceeded for shard shardId-000000000000 (injected)' }));
    }
    if (calls % 13 === 0) {
      stats.failed500++;
      return reply(res, 500, JSON.stringify({ __type: 'InternalFailure', message: 'injected' }));
    }
    if (calls % 7 === 0) {
      stats.incomplete++;
      return reply(res, 200, JSON.stringify({ Records: [] }));
    }
    if (calls % 5 !== 0) {
      stats.forwarded++;
      return forward(req, body, (code, b) => reply(res, code, b));
    }
    // partial failure: odd positions fail (position 0 when it is alone)
    const request = JSON.parse(body);
    const n = request.Records.length;
    const fails = request.Records.map((r, i) => (n === 1 ? true : i % 2 === 1));
    stats.partial++;
    stats.failedRecords += fails.filter((f) => f).length;
    const injected = { ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: 'Rate exceeded (injected)' };
    storeSome(res, request, fails.map((f) => (f ? injected : null)),
      (keepBody, cb) => forward(req, keepBody, cb));
  });
}).listen(listenPort, '127.0.0.1');
