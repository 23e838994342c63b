// Type-checked in the scratch project against the package's .d.ts (never run).
import { connect, GatehouseClient, type ClientStatus, type Message, type StopReason } from 'gatehouse/client'

const client: GatehouseClient = connect({
  url: 'http://localhost:3000',
  accessToken: () => 'token',
  onMessage: (message: Message) => { console.log(message.senderId, message.content, message.createdAt) },
  onStatus: (status: ClientStatus) => { if (status.state === 'stopped') console.log(status.reason) }
})
const reason: Promise<StopReason> = client.stopped
// @ts-expect-error onMessage is required
connect({ url: 'http://localhost:3000' })
export { reason }
