// What the proxies in front of kinesalite share (fault_proxy.js,
// shard_limit_proxy.js): passing a call on, and answering like Kinesis.
'use strict';
const http = require('http');

// send the call to kinesalite; cb(status, body) (502 if it cannot be reached)
function pass(port, method, path, headers, body, cb) {
  const up = http.request({ host: '127.0.0.1', port, method, path,
    headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => cb(res.statusCode, Buffer.concat(chunks).toString()));
  });
  up.on('error', (e) => cb(502, JSON.stringify({ __type: 'ProxyError', message: String(e) })));
  up.end(body);
}

function reply(res, code, body) {
  res.writeHead(code, { 'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(body) });
  res.end(body);
}

// PutRecords with some records failing: errors[i] is null for a record to
// store, else the {ErrorCode, ErrorMessage} it fails with.  The others go
// on to kinesalite (send(body, cb)); the answer has every record in its
// place, as AWS's does.
function storeSome(res, request, errors, send) {
  const keep = request.Records.filter((r, i) => errors[i] === null);
  const finish = (stored) => {
    let k = 0;
    const records = errors.map((e) => (e === null ? stored[k++] : e));
    reply(res, 200, JSON.stringify({ FailedRecordCount: errors.filter((e) => e !== null).length,
      Records: records }));
  };
  if (keep.length === 0) return finish([]);
  send(JSON.stringify({ ...request, Records: keep }), (code, b) => {
    if (code !== 200) return reply(res, code, b);
    finish(JSON.parse(b).Records);
  });
}

module.exports = { pass, reply, storeSome };
