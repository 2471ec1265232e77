/*
 * itm_compat.h: every difference between the PostgreSQL majors that
 * invitetomedia builds against (15, 16, 17 and 18), in one place.
 *
 * The code is written against the newest API (PostgreSQL 18).  For an
 * older major this header turns those calls into the older ones: a macro
 * of the same name that drops an argument the older function does not
 * take, or a small inline function where a type changed.  So no .c file
 * has a version test; a new major adds lines here, and the day a major
 * leaves support its lines are deleted here.
 *
 * Each entry names the major that changed the API.  Where the newer call
 * carries meaning that the older one cannot (an instrumentation pointer,
 * a summarizing-index flag), the shim asserts that the caller passed what
 * the older major implies.
 *
 * Only 15 and 18 are built and tested here (README, "Install"): Debian's
 * archive serves no 16 or 17 sources to these machines.  The 16 and 17
 * branches below follow the 16 and 17 headers, where each change came in.
 */
#ifndef ITM_COMPAT_H
#define ITM_COMPAT_H

#include "postgres.h"

#include "access/tableam.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "replication/origin.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#if PG_VERSION_NUM < 150000
#error "invitetomedia needs PostgreSQL 15 or later"
#endif

#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"	/* addRTEPermissionInfo */
#endif

/*---- 16: object_aclcheck and object_ownercheck ----------------------------
 * One function per check for every catalogue, replacing pg_proc_aclcheck,
 * pg_class_ownercheck and the like (gone in 16).
 */
#if PG_VERSION_NUM < 160000
static inline AclResult
itm_object_aclcheck_15(Oid classid, Oid objectid, Oid roleid, AclMode mode)
{
	if (classid != ProcedureRelationId)
		elog(ERROR, "itm_compat.h: object_aclcheck for class %u is not written for 15", classid);
	return pg_proc_aclcheck(objectid, roleid, mode);
}
#define object_aclcheck(classid, objectid, roleid, mode) \
	itm_object_aclcheck_15((classid), (objectid), (roleid), (mode))

static inline bool
itm_object_ownercheck_15(Oid classid, Oid objectid, Oid roleid)
{
	if (classid != RelationRelationId)
		elog(ERROR, "itm_compat.h: object_ownercheck for class %u is not written for 15", classid);
	return pg_class_ownercheck(objectid, roleid);
}
#define object_ownercheck(classid, objectid, roleid) \
	itm_object_ownercheck_15((classid), (objectid), (roleid))
#endif

/*---- 16 and 18: ExecInitRangeTable ---------------------------------------
 * 16 moved the permissions out of the range table entries into a list of
 * RTEPermissionInfo (built by addRTEPermissionInfo), which the executor
 * reads when it reports a constraint violation; 18 added the set of range
 * table indexes that survived initial pruning.  15 has neither: the list
 * stays NIL and is not passed.
 */
#if PG_VERSION_NUM < 160000
#define addRTEPermissionInfo(rteperminfos, rte) ((void) (rteperminfos), (void) (rte))
#endif
#if PG_VERSION_NUM < 160000
#define ExecInitRangeTable(estate, rangeTable, permInfos, unpruned_relids) \
	ExecInitRangeTable((estate), (rangeTable))
#elif PG_VERSION_NUM < 180000
#define ExecInitRangeTable(estate, rangeTable, permInfos, unpruned_relids) \
	ExecInitRangeTable((estate), (rangeTable), (permInfos))
#endif

/*---- 18: index_beginscan's instrumentation --------------------------------
 * 18 passes an IndexScanInstrumentation (EXPLAIN ANALYZE's counts); this
 * code passes NULL, which older majors imply.
 */
#if PG_VERSION_NUM < 180000
#define index_beginscan(heapRelation, indexRelation, snapshot, instrument, nkeys, norderbys) \
	(AssertMacro((instrument) == NULL), \
	 index_beginscan((heapRelation), (indexRelation), (snapshot), (nkeys), (norderbys)))
#endif

/*---- 16: which indexes an update must insert into -------------------------
 * 16 tells summarizing indexes (BRIN) apart: simple_table_tuple_update
 * reports TU_None, TU_All or TU_Summarizing, and ExecInsertIndexTuples
 * takes onlySummarizing.  15 reports a bool: true is TU_All, and
 * onlySummarizing is always false there.
 */
#if PG_VERSION_NUM < 160000
typedef enum TU_UpdateIndexes
{
	TU_None,
	TU_All,
	TU_Summarizing
} TU_UpdateIndexes;

static inline void
itm_simple_table_tuple_update_15(Relation rel, ItemPointer otid, TupleTableSlot *slot,
								 Snapshot snapshot, TU_UpdateIndexes *update_indexes)
{
	bool		all;

	simple_table_tuple_update(rel, otid, slot, snapshot, &all);
	*update_indexes = all ? TU_All : TU_None;
}
#define simple_table_tuple_update(rel, otid, slot, snapshot, update_indexes) \
	itm_simple_table_tuple_update_15((rel), (otid), (slot), (snapshot), (update_indexes))

#define ExecInsertIndexTuples(resultRelInfo, slot, estate, update, noDupErr, \
							  specConflict, arbiterIndexes, onlySummarizing) \
	(AssertMacro(!(onlySummarizing)), \
	 ExecInsertIndexTuples((resultRelInfo), (slot), (estate), (update), (noDupErr), \
						   (specConflict), (arbiterIndexes)))
#endif

/*---- 16: replorigin_session_setup's acquired_by --------------------------
 * 16 lets a parallel apply worker share its leader's origin (the leader's
 * pid); 0 is the one process of 15.
 */
#if PG_VERSION_NUM < 160000
#define replorigin_session_setup(node, acquired_by) \
	(AssertMacro((acquired_by) == 0), replorigin_session_setup(node))
#endif

/*---- 17: infinite intervals ----------------------------------------------
 * 'infinity' and '-infinity' are intervals since 17; before, every
 * interval is finite.
 */
#ifndef INTERVAL_NOT_FINITE
#define INTERVAL_NOT_FINITE(i) ((void) (i), false)
#endif

/*---- 18: the CHECK constraints' expressions, and NOT ENFORCED -------------
 * ResultRelInfo's ri_ConstraintExprs became ri_CheckConstraintExprs; 18
 * also has CHECK constraints that are NOT ENFORCED (ConstrCheck's
 * ccenforced), which the executor skips.  Before 18 every CHECK is
 * enforced.
 */
#if PG_VERSION_NUM < 180000
#define ri_CheckConstraintExprs ri_ConstraintExprs
#define ItmCheckEnforced(check) ((void) (check), true)
#else
#define ItmCheckEnforced(check) ((check)->ccenforced)
#endif

/*---- 18: the module's name and version in its magic block -----------------
 * 18 shows them in pg_get_loaded_modules(); older majors have the plain
 * block.
 */
#ifdef PG_MODULE_MAGIC_EXT
#define ITM_MODULE_MAGIC(modname, modversion) \
	PG_MODULE_MAGIC_EXT(.name = (modname), .version = (modversion))
#else
#define ITM_MODULE_MAGIC(modname, modversion) PG_MODULE_MAGIC
#endif

#endif							/* ITM_COMPAT_H */
