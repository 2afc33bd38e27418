// Composes ats-gateway's subgraph SDL (`schema.federation.graphql`, or the one given) with the
// jobs subgraph, with Apollo's composition library. Fails on any composition error and on any
// hint about keys or entities; prints every hint. Run alone it composes the checked-in SDL.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'graphql';
import { composeServices } from '@apollo/composition';
import { typeDefs as jobsTypeDefs } from './jobs.mjs';

export const checkedInSdl = () =>
  readFileSync(fileURLToPath(new URL('../../schema.federation.graphql', import.meta.url)), 'utf8');

/** The supergraph SDL of ats-gateway (`gatewaySdl` at `gatewayUrl`) and jobs (at `jobsUrl`). */
export function compose(gatewaySdl, gatewayUrl, jobsUrl) {
  const result = composeServices([
    { name: 'ats', typeDefs: parse(gatewaySdl), url: gatewayUrl },
    { name: 'jobs', typeDefs: jobsTypeDefs, url: jobsUrl },
  ]);
  if (result.errors && result.errors.length) {
    for (const e of result.errors) console.error(`composition error: ${e.extensions?.code ?? ''} ${e.message}`);
    throw new Error(`composition failed with ${result.errors.length} error(s)`);
  }
  const hints = result.hints ?? [];
  for (const h of hints) console.log(`composition hint: ${h.definition.code}: ${h.message}`);
  // INCONSISTENT_ENTITY: a type with a @key in one subgraph but not another; any other hint
  // whose text names @key or a key counts too.
  const aboutKeys = hints.filter(
    (h) => /KEY|ENTITY/.test(h.definition.code) || /@key|\bkey\b|\bkeys\b/i.test(h.message),
  );
  if (aboutKeys.length) throw new Error(`${aboutKeys.length} composition hint(s) about keys`);
  console.log(`composed: ${hints.length} hint(s), none about keys`);
  return result.supergraphSdl;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  compose(checkedInSdl(), 'http://127.0.0.1:8080/graphql', 'http://127.0.0.1:4001/graphql');
}
