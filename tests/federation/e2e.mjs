// End to end through a real router: ats-gateway (`--federation`, over its embedded emulator) and
// the jobs subgraph, composed with Apollo's composition library and served by Hive Gateway from
// the composed supergraph file. Queries cross both subgraphs, one way and the other, and the
// emulator's counter shows what the router's `_entities` calls cost upstream.
//
//   GATEWAY_BIN=target/debug/ats-gateway node tests/federation/e2e.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { compose, checkedInSdl } from './compose.mjs';
import { serveJobs } from './jobs.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const bin = process.env.GATEWAY_BIN ?? join(here, '../../target/debug/ats-gateway');
const work = mkdtempSync(join(tmpdir(), 'ats-federation-'));
const children = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts `cmd args` with its output in `work/<name>.log`. */
function start(name, cmd, args, env) {
  const log = createWriteStream(join(work, `${name}.log`));
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  child.name = name;
  children.push(child);
  return child;
}

async function until(what, child, probe) {
  for (let i = 0; i < 600; i++) {
    if (child && child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}); see ${work}`);
    try {
      if (await probe()) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not come up; see ${work}`);
}

async function post(url, query, variables = {}) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return r.json();
}

async function data(url, query, variables) {
  const v = await post(url, query, variables);
  assert.ok(!v.errors, `errors from ${url}: ${JSON.stringify(v.errors)}`);
  return v.data;
}

/** Upstream requests the emulator received while `f` ran. */
async function upstream(emulator, f) {
  await fetch(`${emulator}/_emulator/stats/reset`, { method: 'POST' });
  const v = await f();
  const stats = await (await fetch(`${emulator}/_emulator/stats`)).json();
  return [stats.total, v];
}

async function main() {
  const [gwPort, emuPort, jobsPort, routerPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const gateway = `http://127.0.0.1:${gwPort}/graphql`;
  const emulator = `http://127.0.0.1:${emuPort}`;
  const jobs = `http://127.0.0.1:${jobsPort}/graphql`;
  const router = `http://127.0.0.1:${routerPort}/graphql`;

  console.log('== federation: ats-gateway --federation over its embedded emulator');
  const env = { PATH: process.env.PATH, HOME: process.env.HOME };
  const gw = start('ats-gateway', bin, [
    'serve', '--federation', '--listen', `127.0.0.1:${gwPort}`, '--emulator-listen', `127.0.0.1:${emuPort}`,
    '--state-db', ':memory:',
  ], env);
  await until('ats-gateway', gw, async () => (await fetch(`http://127.0.0.1:${gwPort}/healthz`)).ok);

  const sdl = (await data(gateway, '{ _service { sdl } }'))._service.sdl;
  assert.equal(sdl, checkedInSdl(), '_service.sdl is schema.federation.graphql');

  // The jobs subgraph advertises the first 50 recruiting requests.
  const rrs = (await data(gateway, `{ recruitingRequests(first: 50) { nodes {
      id recruitingRequestId dataAreaId recruiter { partyNumber } } } }`)).recruitingRequests.nodes;
  assert.equal(rrs.length, 50);
  const requests = rrs.map((r) => ({ ...r, recruiterPartyNumber: r.recruiter?.partyNumber }));
  const jobsServer = await serveJobs(requests, jobsPort);

  console.log('== federation: compose (Apollo composition)');
  const supergraph = compose(sdl, gateway, jobs);
  const supergraphFile = join(work, 'supergraph.graphql');
  writeFileSync(supergraphFile, supergraph);

  console.log('== federation: Hive Gateway on the supergraph file');
  // Only what it needs from the environment: no registry, usage reporting or telemetry token
  // (Hive's or Apollo's) can reach it, so it runs offline.
  const hive = join(here, 'node_modules/.bin/hive-gateway');
  const rt = start('router', hive, ['supergraph', supergraphFile, '--host', '127.0.0.1', '--port', `${routerPort}`,
    '--polling', '1h', '--disable-websockets'], { ...env, NODE_ENV: 'production' });
  await until('the router', rt, async () => (await fetch(`http://127.0.0.1:${routerPort}/readiness`)).ok);

  console.log('== federation: a query that starts in ats-gateway and adds postings from jobs');
  const fromAts = await data(router, `{ recruitingRequests(first: 5) { nodes {
      id recruitingRequestId positions { positionId } postings { title board } } } }`);
  const nodes = fromAts.recruitingRequests.nodes;
  assert.equal(nodes.length, 5);
  for (const n of nodes) {
    assert.ok(Array.isArray(n.positions), 'positions from ats-gateway');
    assert.equal(n.postings.length, 1, `one posting for ${n.recruitingRequestId}`);
    assert.equal(n.postings[0].title, `Posting for ${n.recruitingRequestId}`);
  }

  console.log('== federation: a query that starts in jobs and resolves RecruitingRequest through _entities');
  const [cost, fromJobs] = await upstream(emulator, () =>
    data(router, `{ jobPostings(first: 50) { id title recruitingRequest { id recruitingRequestId dataAreaId status } } }`),
  );
  assert.equal(fromJobs.jobPostings.length, 50);
  fromJobs.jobPostings.forEach((p, i) => {
    assert.equal(p.recruitingRequest.id, rrs[i].id);
    assert.equal(p.recruitingRequest.recruitingRequestId, rrs[i].recruitingRequestId);
    assert.equal(p.title, `Posting for ${rrs[i].recruitingRequestId}`);
  });
  console.log(`_entities for 50 recruiting requests through the router: ${cost} upstream request(s)`);
  assert.equal(cost, 1, '_entities for 50 recruiting requests cost one upstream request');

  console.log('== federation: persons by their readable key, partyNumber, through the router');
  const [personCost, contacts] = await upstream(emulator, () =>
    data(router, '{ jobPostings(first: 50) { id contact { partyNumber firstName lastName } } }'),
  );
  const withContact = contacts.jobPostings.filter((p) => p.contact);
  assert.ok(withContact.length > 0, 'some postings have a contact');
  contacts.jobPostings.forEach((p, i) => {
    assert.equal(p.contact?.partyNumber ?? null, requests[i].recruiterPartyNumber ?? null);
    if (p.contact) assert.ok(p.contact.firstName, `the person ${p.contact.partyNumber} was resolved`);
  });
  console.log(`_entities for ${withContact.length} persons by partyNumber: ${personCost} upstream request(s)`);
  assert.equal(personCost, 1);

  jobsServer.close();
  // Offline: nothing in the router's log about a host it could not reach (registry, usage
  // reporting, telemetry, update checks).
  const routerLog = readFileSync(join(work, 'router.log'), 'utf8');
  const offline = /ENOTFOUND|EAI_AGAIN|getaddrinfo|fetch failed|ECONNREFUSED|ETIMEDOUT/;
  assert.ok(!offline.test(routerLog), `the router tried the network:\n${routerLog}`);
  console.log('== federation: ok');
}

let status = 0;
try {
  await main();
} catch (e) {
  console.error(e);
  status = 1;
} finally {
  for (const c of children) c.kill('SIGTERM');
  if (status === 0) rmSync(work, { recursive: true, force: true });
  else console.error(`logs kept in ${work}`);
}
process.exit(status);
