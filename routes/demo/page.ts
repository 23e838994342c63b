// The demo page, kept in code so the build ships it with the server.

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gatehouse: live messages</title>
<link rel="icon" href="/demo/icon.svg">
<link rel="stylesheet" href="/demo/demo.css">
<script type="module" src="/demo/demo.js"></script>
</head>
<body>
<header>
  <h1>gatehouse</h1>
  <p>Connection: <output id="state" data-state="idle">not connected</output></p>
</header>
<main>
<section aria-labelledby="receive">
  <h2 id="receive">Receive</h2>
  <form id="connect">
    <label>Access token
      <input id="access-token" type="password" autocomplete="off" spellcheck="false" placeholder="empty: use the access_token cookie">
    </label>
    <button type="submit">Connect</button>
    <button type="button" id="disconnect">Disconnect</button>
  </form>
  <p id="count">No messages waiting.</p>
  <ol id="messages"></ol>
</section>
<section aria-labelledby="send">
  <h2 id="send">Send</h2>
  <form id="send-form">
    <label>API token <input id="api-token" type="password" autocomplete="off" spellcheck="false" required></label>
    <label>Recipient ids, comma-separated <input id="recipients" required placeholder="bob, alice"></label>
    <label>Message <textarea id="content" rows="3" required></textarea></label>
    <button type="submit">Send</button>
    <output id="send-result"></output>
  </form>
</section>
</main>
</body>
</html>
`

export const PAGE_ICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1d2430"/></svg>\n'

export const PAGE_CSS = `body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 46rem; padding: 1rem; color: #1d2430; }
h1 { margin: 0 0 .25rem; font-size: 1.4rem; }
h2 { font-size: 1.1rem; margin-top: 1.5rem; }
label { display: block; margin: .4rem 0; }
input, textarea { display: block; width: 100%; box-sizing: border-box; padding: .35rem; font: inherit; }
button { margin: .3rem .3rem .3rem 0; padding: .3rem .8rem; font: inherit; cursor: pointer; }
#state { font-weight: 600; }
#state[data-state=ready] { color: #137333; }
#state[data-state=disconnected], #state[data-state=connecting] { color: #9a6700; }
#state[data-state=stopped] { color: #b3261e; }
#messages { list-style: none; padding: 0; }
#messages li { border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem .75rem; margin: .5rem 0; }
.meta { color: #57606a; font-size: .85rem; }
.content { margin: .3rem 0; white-space: pre-wrap; overflow-wrap: anywhere; }
#send-result[data-ok=false] { color: #b3261e; }
`

// Plain JavaScript for the browser: it imports the typed client, built, from /demo/client.js.
export const PAGE_SCRIPT = `import { GatehouseClient } from './client.js'

const $ = id => document.getElementById(id)
let client = null

const STOPPED = {
  closed: 'not connected',
  revoked: 'access revoked: not reconnecting',
  unauthorized: 'access token refused: paste a valid one, or sign in for the cookie'
}

function describe (status) {
  if (status.state === 'connecting') return status.attempt > 0 ? 'connecting (attempt ' + (status.attempt + 1) + ')' : 'connecting'
  if (status.state === 'ready') return 'connected as ' + status.userId
  if (status.state === 'disconnected') return 'disconnected (' + status.code + '), retrying in ' + Math.ceil(status.retryInMs / 1000) + ' s'
  return STOPPED[status.reason]
}

function showStatus (status) {
  $('state').textContent = describe(status)
  $('state').dataset.state = status.state
}

function updateCount () {
  const n = $('messages').children.length
  $('count').textContent = n === 0 ? 'No messages waiting.' : n + (n === 1 ? ' message' : ' messages') + ' waiting to be acknowledged.'
}

function show (message) {
  const item = document.createElement('li')
  item.dataset.id = message.id
  const meta = document.createElement('div')
  meta.className = 'meta'
  const sender = document.createElement('strong')
  sender.className = 'sender'
  sender.textContent = message.senderId
  const time = document.createElement('time')
  time.dateTime = message.createdAt
  time.textContent = new Date(message.createdAt).toLocaleString()
  meta.append('from ', sender, ' at ', time)
  const content = document.createElement('p')
  content.className = 'content'
  content.textContent = message.content
  const ack = document.createElement('button')
  ack.type = 'button'
  ack.className = 'ack'
  ack.textContent = 'Acknowledge'
  ack.addEventListener('click', () => {
    client?.ack(message.id)
    item.remove()
    updateCount()
  })
  item.append(meta, content, ack)
  $('messages').append(item)
  updateCount()
}

function connect (accessToken) {
  client?.close()
  $('messages').replaceChildren()
  updateCount()
  client = new GatehouseClient({
    url: location.origin,
    accessToken: accessToken || undefined,
    ack: 'manual',
    ackDelayMs: 0,
    onStatus: showStatus,
    onMessage: show,
    onError: error => console.warn('gatehouse client:', error)
  })
  client.start()
}

$('connect').addEventListener('submit', event => {
  event.preventDefault()
  connect($('access-token').value.trim())
})
$('disconnect').addEventListener('click', () => client?.close())
// Acknowledgements still waiting go out before the page does.
addEventListener('pagehide', () => client?.close())

$('send-form').addEventListener('submit', async event => {
  event.preventDefault()
  const result = $('send-result')
  result.textContent = 'sending…'
  delete result.dataset.ok
  try {
    const res = await fetch('/api/messages/send-bulk', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + $('api-token').value.trim() },
      body: JSON.stringify({
        recipientIds: $('recipients').value.split(',').map(id => id.trim()).filter(Boolean),
        content: $('content').value
      })
    })
    const body = await res.json()
    result.dataset.ok = String(res.ok)
    result.textContent = res.ok ? 'sent to ' + body.count + (body.count === 1 ? ' recipient' : ' recipients') : res.status + ': ' + body.message
  } catch (error) {
    result.dataset.ok = 'false'
    result.textContent = 'could not reach the service: ' + error.message
  }
})

// Arriving signed in (the access_token cookie), the page connects by itself.
connect('')
`
