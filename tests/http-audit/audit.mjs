// Runs graphql-http's GraphQL over HTTP server audits against the gateway at GATEWAY_URL.
// Prints every audit with its result; exits 1 when a MUST audit fails (SHOULD failures are
// printed, and each one is explained in the README's "GraphQL over HTTP" section).
import { serverAudits } from 'graphql-http';

const url = process.env.GATEWAY_URL;
if (!url) {
  console.error('GATEWAY_URL is not set (such as http://127.0.0.1:18282/graphql)');
  process.exit(2);
}

const audits = serverAudits({ url });
const results = [];
for (const audit of audits) {
  results.push(await audit.fn());
}

const level = (name) => name.split(' ', 1)[0];
const mark = { ok: 'pass', error: 'FAIL', warn: 'fail', notice: 'fail' };
for (const r of results) {
  const reason = r.status === 'ok' ? '' : `  (${r.reason}; got ${r.response.status})`;
  console.log(`${mark[r.status].padEnd(4)} ${r.id} ${r.name}${reason}`);
}

const counts = {};
for (const r of results) {
  const key = `${level(r.name)} ${r.status === 'ok' ? 'pass' : 'fail'}`;
  counts[key] = (counts[key] ?? 0) + 1;
}
console.log('');
for (const l of ['MUST', 'SHOULD', 'MAY']) {
  console.log(`${l}: ${counts[`${l} pass`] ?? 0} passed, ${counts[`${l} fail`] ?? 0} failed`);
}

const shouldFailures = results.filter((r) => r.status === 'warn');
if (shouldFailures.length > 0) {
  console.log('\nSHOULD audits that fail (see the README for why):');
  for (const r of shouldFailures) console.log(`  ${r.id} ${r.name}: ${r.reason}`);
}
const mustFailures = results.filter((r) => r.status === 'error');
if (mustFailures.length > 0) {
  console.log('\nMUST audits that fail:');
  for (const r of mustFailures) console.log(`  ${r.id} ${r.name}: ${r.reason}`);
  process.exit(1);
}
