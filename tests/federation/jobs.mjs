// The jobs subgraph the federation test ships: job postings that advertise recruiting requests.
// It adds `postings` to ats-gateway's `RecruitingRequest` through its `@key(fields: "id")`, and
// points at a `Person` by the gateway's readable key, `partyNumber`. Its data is a list of the
// recruiting requests it has postings for, given by the test.
import { createServer } from 'node:http';
import { parse } from 'graphql';
import { createYoga } from 'graphql-yoga';
import { buildSubgraphSchema } from '@apollo/subgraph';

export const typeDefs = parse(/* GraphQL */ `
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])

  "A job ad published for a recruiting request."
  type JobPosting @key(fields: "id") {
    id: ID!
    title: String!
    board: String!
    "The recruiting request it advertises (resolved by ats-gateway)."
    recruitingRequest: RecruitingRequest!
    "Whom applicants write to: the request's recruiter (resolved by ats-gateway by party number)."
    contact: Person
  }

  # A recruiting request of ats-gateway (which describes it), with the postings that advertise it.
  type RecruitingRequest @key(fields: "id") {
    id: ID!
    postings: [JobPosting!]!
  }

  # A person of ats-gateway, referred to by party number.
  type Person @key(fields: "partyNumber", resolvable: false) {
    partyNumber: String
  }

  type Query {
    "Job postings, newest first."
    jobPostings(first: Int): [JobPosting!]!
  }
`);

/** One posting per request: `{ id, recruitingRequestId, recruiterPartyNumber }` → postings. */
function postingsOf(requests) {
  return requests.map((r, i) => ({
    id: `posting-${i + 1}`,
    title: `Posting for ${r.recruitingRequestId}`,
    board: i % 2 ? 'careers-site' : 'job-board',
    requestId: r.id,
    contact: r.recruiterPartyNumber ?? null,
  }));
}

export function jobsSchema(requests) {
  const postings = postingsOf(requests);
  const posting = (p) => ({ ...p, recruitingRequest: { id: p.requestId } });
  return buildSubgraphSchema({
    typeDefs,
    resolvers: {
      Query: {
        jobPostings: (_, { first }) => postings.slice(0, first ?? postings.length).map(posting),
      },
      JobPosting: {
        __resolveReference: ({ id }) => postings.map(posting).find((p) => p.id === id) ?? null,
        contact: (p) => (p.contact ? { partyNumber: p.contact } : null),
      },
      RecruitingRequest: {
        __resolveReference: ({ id }) => ({ id }),
        postings: ({ id }) =>
          postings.filter((p) => p.requestId.toLowerCase() === String(id).toLowerCase()).map(posting),
      },
    },
  });
}

/** Serves the jobs subgraph on 127.0.0.1:`port`; resolves to the server once it listens. */
export function serveJobs(requests, port) {
  const yoga = createYoga({ schema: jobsSchema(requests), graphiql: false, logging: false });
  const server = createServer(yoga);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}
