// A local Kinesis for tests: kinesalite on 127.0.0.1 only (its CLI binds all
// interfaces).  usage: node kinesalite_server.js <port> [persist-dir]
'use strict';
const kinesalite = require('kinesalite');
const port = parseInt(process.argv[2], 10);
const opts = { createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 };
if (process.argv[3]) opts.path = process.argv[3];
kinesalite(opts).listen(port, '127.0.0.1', (err) => {
  if (err) { console.error(err); process.exit(1); }
  console.log(`kinesalite listening on 127.0.0.1:${port}`);
});
