import fp from 'fastify-plugin'

export default fp(async function clerk () {}, { name: 'clerk', dependencies: ['env'] })
