// The playground page: GraphiQL over the gateway's own /graphql, with the example
// operations from playground/examples/ as the first tabs.
//
// The examples are not bundled: the gateway embeds playground/examples/ and serves
// them as one JSON list at /playground/examples.json (see src/server/playground.rs),
// so editing an example needs a `cargo build`, not an npm rebuild, and the page
// always shows the examples the gateway's tests run.

import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { createRoot } from 'react-dom/client';
import 'graphiql/style.css';
import './playground.css';

// Same origin, so the page works on whatever address the gateway listens on.
// No incremental delivery: the gateway answers every query and mutation with one JSON body.
// Subscriptions go over the gateway's WebSocket (graphql-transport-ws, through graphql-ws).
const subscriptionUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;
const fetcher = createGraphiQLFetcher({ url: '/graphql', subscriptionUrl, enableIncrementalDelivery: false });

/** The example tabs: [{ title, query, variables }], or none if they cannot be read. */
async function loadExamples() {
  try {
    const res = await fetch('/playground/examples.json', { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return await res.json();
  } catch (e) {
    console.warn('playground: no example tabs:', e);
    return [];
  }
}

/** Whether GraphiQL has tabs saved from an earlier visit (it then ignores `defaultTabs`). */
function hasSavedTabs() {
  try {
    return localStorage.getItem('graphiql:tabState') !== null;
  } catch {
    return false;
  }
}

const examples = await loadExamples();
const defaultTabs = examples.map(({ query, variables, headers }) => ({ query, variables: variables ?? null, headers: headers ?? null }));
// GraphiQL fills the editors of the first default tab with its query but not its variables
// (graphql/graphiql#3392); handing them in as `variables` does. Only on a first visit: later visits
// restore the saved tabs, which a `variables` prop would be matched against.
const firstTabVariables = hasSavedTabs() ? undefined : (defaultTabs[0]?.variables ?? undefined);

createRoot(document.getElementById('graphiql')).render(
  <GraphiQL
    fetcher={fetcher}
    defaultTabs={defaultTabs.length > 0 ? defaultTabs : undefined}
    variables={firstTabVariables}
    defaultEditorToolsVisibility="variables"
  >
    <GraphiQL.Logo>ats-gateway</GraphiQL.Logo>
  </GraphiQL>,
);
