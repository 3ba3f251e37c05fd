// evaluate.mjs evaluates AWS calls, as the EC2 simulator records them
// (test/ec2sim Call, JSON, on stdin), against an IAM identity policy with
// @cloud-copilot/iam-simulate, and prints one result per authorization check.
//
//   node evaluate.mjs --policy FILE [--var NAME=VALUE]... [--principal ARN] [--text] < calls.json
//
// --var replaces ${NAME} in the policy (the chart's policy has ${CLUSTER_NAME},
// ${AWS_ACCOUNT_ID}, ${NODE_ROLE_NAME}, ${INTERRUPTION_QUEUE}); a placeholder
// left unreplaced is an error. The output is JSON: {"results": [{call, check,
// action, resource, decision, engine, reasons, ignoredContextKeys}]}, or with
// --text one line per check: ALLOWED or DENIED, the action, the resource and
// why.
//
// This is a test-time tool of its own, run as a child process by the Go
// package in this folder; the library is AGPL-3.0 and never part of nodewright.
import { readFileSync } from 'node:fs'
import { runSimulation, runUnsafeSimulation, typeForContextKey } from '@cloud-copilot/iam-simulate'

function parseArgs(argv) {
  const args = { vars: {}, text: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--policy') args.policy = value()
    else if (a === '--principal') args.principal = value()
    else if (a === '--text') args.text = true
    else if (a === '--var') {
      const v = value()
      const eq = v.indexOf('=')
      if (eq <= 0) throw new Error(`--var ${v}: want NAME=VALUE`)
      args.vars[v.slice(0, eq)] = v.slice(eq + 1)
    } else throw new Error(`unknown argument ${a}`)
  }
  if (!args.policy) throw new Error('--policy is required')
  return args
}

// loadPolicy reads the policy and fills its placeholders.
function loadPolicy(file, vars) {
  let text = readFileSync(file, 'utf8')
  for (const [name, value] of Object.entries(vars)) text = text.replaceAll('${' + name + '}', value)
  const left = text.match(/\$\{[A-Z][A-Z0-9_]*\}/g)
  if (left) throw new Error(`${file}: no --var for ${[...new Set(left)].join(', ')}`)
  return JSON.parse(text)
}

const statements = (policy) => (Array.isArray(policy.Statement) ? policy.Statement : [policy.Statement])
const statementName = (s, i) => s.Sid || `#${i + 1}`

// contextVariables turns the recorded context (every key a list) into the
// library's: a string for single-valued keys, a list for multivalued ones.
async function contextVariables(context = {}) {
  const out = {}
  for (const [key, values] of Object.entries(context)) {
    const type = await typeForContextKey(key).catch(() => undefined)
    out[key] = type && type.startsWith('ArrayOf') ? values : values[0]
  }
  return out
}

function accountOf(resource, fallback) {
  const parts = resource.split(':')
  return parts.length > 4 && parts[4] !== '' ? parts[4] : fallback
}

function simulation(policy, principal, account, check, context) {
  return {
    request: {
      principal,
      action: check.action,
      resource: { resource: check.resource, accountId: accountOf(check.resource, account) },
      contextVariables: context
    },
    identityPolicies: [{ name: 'nodewright', policy }],
    serviceControlPolicies: [],
    resourceControlPolicies: []
  }
}

// decide evaluates one check. A concrete ARN of a resource type the Service
// Authorization Reference lists for the action, or "*", is evaluated with
// validation (action names, context keys and their types). A type/* ARN of a
// resource the call creates, an ARN of a type the reference does not list
// for the action (what an instant fleet's launch touches) or an ARN without
// an account (AWS's public SSM parameters) is matched literally, as IAM
// matches the ARN it is given.
async function decide(policy, principal, account, check, context) {
  const sim = simulation(policy, principal, account, check, context)
  const literal = check.resource !== '*' && check.resource.includes('*')
  if (!literal) {
    const r = await runSimulation(sim, {})
    if (r.resultType === 'single') {
      return { decision: r.overallResult, engine: 'validated', ignoredContextKeys: r.result.ignoredContextKeys ?? [] }
    }
    if (r.resultType === 'error' && r.errors.message !== 'no.resource.types') {
      throw new Error(`${check.action} on ${check.resource}: the evaluator refused the request: ${JSON.stringify(r.errors)}`)
    }
  }
  return { decision: runUnsafeSimulation(sim, {}), engine: 'literal', ignoredContextKeys: [] }
}

const only = (policy, statement) => ({ Version: policy.Version, Statement: [statement] })

// explain says why a check is denied: the statements that grant the action on
// the resource and the conditions of each that the request fails, or, when
// none grants it, the statements that name the action.
function explain(policy, principal, account, check, context) {
  const run = (p) => runUnsafeSimulation(simulation(p, principal, account, check, context), {})
  const reasons = []
  const covering = []
  statements(policy).forEach((s, i) => {
    const name = statementName(s, i)
    if (s.Effect === 'Deny') {
      if (run(only(policy, { ...s, Effect: 'Allow' })) === 'Allowed') reasons.push(`statement ${name} denies it explicitly`)
      return
    }
    const { Condition, ...unconditional } = s
    if (run(only(policy, unconditional)) !== 'Allowed') return
    covering.push(name)
    const failed = []
    for (const [operator, keys] of Object.entries(Condition ?? {})) {
      for (const [key, want] of Object.entries(keys)) {
        if (run(only(policy, { ...unconditional, Condition: { [operator]: { [key]: want } } })) === 'Allowed') continue
        const have = check.context?.[key]
        failed.push(`${operator} ${key} ${JSON.stringify(want)} (the request has ${have ? JSON.stringify(have.length === 1 ? have[0] : have) : 'no ' + key})`)
      }
    }
    reasons.push(`statement ${name} grants ${check.action} on this resource but its condition fails: ${failed.join('; ')}`)
  })
  if (covering.length === 0) {
    const naming = []
    statements(policy).forEach((s, i) => {
      if (s.Effect !== 'Allow') return
      const { Condition, ...unconditional } = s
      if (run(only(policy, { ...unconditional, Resource: '*' })) === 'Allowed') {
        naming.push(`${statementName(s, i)} (${[].concat(s.Resource ?? s.NotResource).join(', ')})`)
      }
    })
    reasons.unshift(
      `no statement grants ${check.action} on ${check.resource}` +
        (naming.length ? `; statements with the action cover only: ${naming.join('; ')}` : '; no statement names the action')
    )
  }
  return reasons
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const policy = loadPolicy(args.policy, args.vars)
  const account = args.vars.AWS_ACCOUNT_ID ?? '111122223333'
  const principal = args.principal ?? `arn:aws:iam::${account}:role/nodewright`
  const calls = JSON.parse(readFileSync(0, 'utf8')) ?? []
  const cache = new Map()
  const results = []
  for (const [ci, call] of calls.entries()) {
    for (const [ki, check] of (call.checks ?? []).entries()) {
      const key = JSON.stringify([check.action, check.resource, check.context ?? {}])
      let r = cache.get(key)
      if (!r) {
        const context = await contextVariables(check.context)
        r = await decide(policy, principal, account, check, context)
        r.reasons = r.decision === 'Allowed' ? [] : explain(policy, principal, account, check, context)
        cache.set(key, r)
      }
      results.push({ call: ci, check: ki, action: check.action, resource: check.resource, ...r })
    }
  }
  if (args.text) {
    for (const r of results) {
      const call = calls[r.call]
      const verdict = r.decision === 'Allowed' ? 'ALLOWED' : 'DENIED '
      const why = r.reasons.length ? `: ${r.reasons.join(' | ')}` : ''
      console.log(`${verdict} ${call.action}: ${r.action} on ${r.resource}${why}`)
    }
    return
  }
  process.stdout.write(JSON.stringify({ results }) + '\n')
}

main().catch((err) => {
  console.error(`evaluate.mjs: ${err.message}`)
  process.exit(2)
})
