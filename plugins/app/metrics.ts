import fp from 'fastify-plugin'

export default fp(async function metrics () {}, { name: 'metrics' })
