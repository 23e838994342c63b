/** The parts of a message every recipient of one send shares. */
export interface MessageBody {
  senderId: string
  content: string
  templateId: string | null
  createdAt: string
}

/** Everything after the id of a message frame; built once per send, not per recipient. */
export function messageTail (body: MessageBody): string {
  let tail = ',"senderId":' + JSON.stringify(body.senderId) + ',"content":' + JSON.stringify(body.content)
  if (body.templateId) tail += ',"templateId":' + JSON.stringify(body.templateId)
  return tail + ',"createdAt":' + JSON.stringify(body.createdAt) + '}'
}

/** `{type:"message", id, senderId, content, templateId?, createdAt}` as a string, ready to send. */
export function messageFrame (id: string, tail: string): string {
  return '{"type":"message","id":' + JSON.stringify(id) + tail
}

export function readyFrame (userId: string): string {
  return JSON.stringify({ type: 'ready', userId })
}

export const PONG_FRAME = '{"type":"pong"}'
