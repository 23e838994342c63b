import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { chromium } from 'playwright-core'
import { projectRoot } from '../../lib/paths.js'
import { accessTokenFor, apiTokenFor, buildApp, createUser, testConfig } from '../helpers/app.js'
import { ensureClientBuilt } from '../helpers/client-build.js'
import { listen, sendDirect } from '../ws/helpers.js'

const CHROMIUM = '/usr/bin/chromium'
// CI must run the browser test: without chromium it fails instead of skipping.
const noBrowser = !existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is not installed (apt-get install chromium)` : false
// Screenshots land in .tap/ (git-ignored), beside tap's own output.
const screenshots = join(projectRoot, '.tap', 'screenshots')

t.test('the demo page shows messages arriving live, acknowledges them, and sends', { skip: noBrowser }, async t => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: CI installs it (.ci/run)`)
  await ensureClientBuilt()
  const app = await buildApp(t)
  const url = await listen(app)
  const org = `org_demo_${process.pid}`
  const alice = await createUser(app, { organization_id: org, name: 'Alice' })
  const bob = await createUser(app, { organization_id: org, name: 'Bob' })
  const bobAccess = accessTokenFor(app, bob)
  const aliceApi = (await apiTokenFor(app, alice)).token

  const profile = await mkdtemp(join(tmpdir(), 'gatehouse-chromium-'))
  t.after(() => rm(profile, { recursive: true, force: true }))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // This machine has no internet: without these chromium waits on the network.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60_000
  })
  t.after(() => context.close())
  context.setDefaultTimeout(20_000)
  const page = context.pages()[0] ?? await context.newPage()
  const problems: string[] = []
  page.on('console', message => { if (message.type() === 'error') problems.push(message.text()) })
  page.on('pageerror', error => problems.push(error.message))

  await page.goto(`${url}/demo`)
  await page.locator('#state[data-state=stopped]').waitFor()
  t.match(await page.locator('#state').textContent(), /access token refused/, 'without a token or cookie the page says what is missing')

  await page.fill('#access-token', bobAccess)
  await page.click('#connect button[type=submit]')
  await page.locator('#state[data-state=ready]').waitFor()
  t.equal(await page.locator('#state').textContent(), `connected as ${bob.id}`)

  // Sent over HTTP by someone else: it appears with its sender and time.
  const [firstId] = await sendDirect(app, alice, [bob.id], 'Hello Bob, over HTTP')
  const first = page.locator(`#messages li[data-id="${firstId}"]`)
  await first.waitFor()
  t.equal(await first.locator('.content').textContent(), 'Hello Bob, over HTTP')
  t.equal(await first.locator('.sender').textContent(), alice.id)
  t.ok(Date.parse(await first.locator('time').getAttribute('datetime') ?? ''), 'with its time')

  // Sent from the page's own form with Alice's API token.
  await page.fill('#api-token', aliceApi)
  await page.fill('#recipients', bob.id)
  await page.fill('#content', 'Sent from the page <b>as text</b>')
  await page.click('#send-form button[type=submit]')
  await page.locator('#send-result[data-ok=true]').waitFor()
  t.equal(await page.locator('#send-result').textContent(), 'sent to 1 recipient')
  const second = page.locator('#messages li', { hasText: 'Sent from the page <b>as text</b>' })
  await second.waitFor()
  t.equal(await page.locator('#messages li b').count(), 0, 'content is shown as text, never as HTML')
  t.equal(await page.locator('#count').textContent(), '2 messages waiting to be acknowledged.')

  await mkdir(screenshots, { recursive: true })
  await page.screenshot({ path: join(screenshots, 'demo.png'), fullPage: true })

  await first.locator('button.ack').click()
  await first.waitFor({ state: 'detached' })
  // The ack travels over the socket: wait until the store has it.
  while ((await app.store.pendingMessages(bob.id, 0, 10)).length !== 1) await new Promise(resolve => setTimeout(resolve, 50))

  // Back with the access_token cookie instead of a pasted token: the page connects by itself
  // and the replay holds only the message not acknowledged.
  await context.addCookies([{ name: 'access_token', value: bobAccess, url }])
  await page.reload()
  await page.locator('#state[data-state=ready]').waitFor()
  await second.waitFor()
  t.equal(await page.locator('#messages li').count(), 1, 'the acknowledged message is not replayed')
  t.equal(await first.count(), 0)

  const failed = await page.evaluate(async () => (await fetch('/api/messages/send-bulk', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status)
  t.equal(failed, 401, 'the page cannot send without an API token')
  t.same(problems.filter(p => !/401/.test(p)), [], 'no script errors and no CSP violations')
})

t.test('the demo page is served by a setting, with a strict CSP', async t => {
  t.equal(testConfig({ NODE_ENV: 'production' }).DEMO, false, 'off in production by default')
  t.equal(testConfig({ NODE_ENV: 'development' }).DEMO, true, 'on elsewhere')
  const off = await buildApp(t, { env: { DEMO: 'false' } })
  t.equal((await off.inject({ method: 'GET', url: '/demo/' })).statusCode, 404, 'DEMO=false: no page')

  const on = await buildApp(t, { env: { DEMO: 'true', NODE_ENV: 'production' } })
  const page = await on.inject({ method: 'GET', url: '/demo/' })
  t.equal(page.statusCode, 200, 'DEMO=true serves it in production too')
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.headers['content-security-policy'], /script-src 'self'/)
  t.notMatch(page.body, /<script>|<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script')
  for (const asset of ['demo.js', 'demo.css', 'icon.svg', 'client.js']) {
    t.equal((await on.inject({ method: 'GET', url: `/demo/${asset}` })).statusCode, 200, asset)
  }
})
