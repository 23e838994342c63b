import fp from 'fastify-plugin'

export default fp(async function messaging () {}, { name: 'messaging', dependencies: ['supabase', 'hub'] })
